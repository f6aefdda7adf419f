"""Guessing an app's worker groups from its repository: kinds from commands, queues and concurrency from
their options and config/sidekiq.yml, worker systems from Gemfile.lock, requirements and pyproject."""

from __future__ import annotations

import pytest

from deploytool.detect import (
    dependencies,
    detect,
    gems,
    kind_of,
    program_words,
    python_packages,
    sidekiq_config,
)
from deploytool.kinds import Queue


def q(*names: str | tuple[str, int]) -> list[Queue]:
    return [Queue(n) if isinstance(n, str) else Queue(*n) for n in names]


@pytest.mark.parametrize(("argv", "kind", "queues"), [
    ("bundle exec sidekiq -C config/sidekiq.yml", "sidekiq", q()),
    ("bin/bundle exec sidekiq -q critical,3 -q default --queue low", "sidekiq", q(("critical", 3), "default", "low")),
    ("sidekiq -q mailers,1", "sidekiq", q("mailers")),
    ("celery -A proj worker -Q a,b -l info", "celery", q("a", "b")),
    ("celery --app=proj worker --queues=a,b --concurrency 4", "celery", q("a", "b")),
    ("python -m celery -A proj worker", "celery", q()),
    ("celery -A proj beat", "command", q()),  # the scheduler, not a worker
    ("rq worker high default", "rq", q("high", "default")),
    ("poetry run rq worker -u redis://r:6379/1 --name w1 high -q default", "rq", q("high", "default")),
    ("rq info", "command", q()),
    ("rq worker '*' default", "rq", q("default")),
    ("dramatiq app", "dramatiq", q()),
    ("dramatiq app.tasks -p 2 -Q emails reports --threads 4", "dramatiq", q("emails", "reports")),
    ("/usr/bin/python3 -m dramatiq app -Q x", "dramatiq", q("x")),
    ("bundle exec puma -p 5000", "command", q()),
    ("python3 consumer.py", "command", q()),
])
def test_the_kind_and_queues_a_command_starts(argv: str, kind: str, queues: list[Queue]) -> None:
    assert kind_of(argv.split()) == (kind, queues)


def test_wrappers_are_looked_through() -> None:
    assert program_words(["bundle", "exec", "sidekiq"]) == ["sidekiq"]
    assert program_words(["uv", "run", "python3.12", "-m", "celery", "worker"]) == ["celery", "worker"]
    assert program_words(["python3", "app.py"]) == ["python3", "app.py"]


def test_sidekiq_yml_queues_and_concurrency_with_the_environment_section_winning() -> None:
    text = ":concurrency: 5\n:queues:\n  - [critical, 2]\n  - default\n  - [low, 1]\nproduction:\n  :concurrency: 12\n"
    assert sidekiq_config(text) == type(sidekiq_config(""))(tuple(q(("critical", 2), "default", "low")), 12)
    # Sidekiq 7 also takes the keys without the colon.
    assert sidekiq_config("concurrency: 3\nqueues: [a, b]\n").concurrency == 3
    assert sidekiq_config(":concurrency: <%= ENV['X'] %>\n").concurrency is None
    assert sidekiq_config("{{ broken").problem.startswith("not plain YAML")


def test_dependencies_name_the_file_and_version() -> None:
    lock = "GEM\n  remote: https://rubygems.org/\n  specs:\n    connection_pool (2.4.1)\n    sidekiq (7.2.4)\n" \
           "      connection_pool (>= 2.3.0)\n"
    assert gems(lock) == {"connection_pool": "2.4.1", "sidekiq": "7.2.4"}
    assert python_packages("celery[redis]>=5.3\n# rq\nDramatiq == 1.0\nredis\n") >= {"celery", "dramatiq", "redis"}
    assert python_packages("# rq\nrequests==2  # not rq\n") == {"requests"}
    assert python_packages('[project]\nname = "shop"\ndependencies = ["rq>=1.15", "flask"]\n') >= {"rq", "flask"}
    pyproject = '[project]\ndependencies = ["rq>=1.15", "flask"]\n'
    assert dependencies({"Gemfile.lock": lock, "requirements/base.txt": "celery\n", "requirements.txt": "celery\n",
                         "pyproject.toml": pyproject}) == {
        "sidekiq": "sidekiq 7.2.4 in Gemfile.lock", "celery": "celery in requirements.txt",
        "rq": "rq in pyproject.toml"}


PROCFILE = """\
web: bundle exec puma -p $PORT
worker: bundle exec sidekiq -C config/sidekiq.yml
release: bin/rails db:migrate
piped: bin/log | tee x
_private: bin/x
"""


def test_a_procfile_makes_one_group_per_process_type() -> None:
    found = detect({"Procfile": PROCFILE, "config/sidekiq.yml": ":concurrency: 10\n:queues: [default, mailers]\n",
                    "Gemfile.lock": "  specs:\n    sidekiq (7.2.4)\n"})
    web, worker = found.groups
    assert (web.name, web.kind, web.procfile, web.uses_port) == ("web", "command", "web", True)
    assert web.why == "Procfile: web: bundle exec puma -p $PORT"
    assert (worker.kind, worker.queues, worker.threads) == ("sidekiq", tuple(q("default", "mailers")), None)
    assert worker.kind_why == "its command runs sidekiq; sidekiq 7.2.4 in Gemfile.lock"
    assert worker.queues_why == "from config/sidekiq.yml"
    # The concurrency stays Sidekiq's to read (-C): said in a comment, not a key.
    assert worker.concurrency_note == "concurrency 10 per process: config/sidekiq.yml (Sidekiq reads it through -C)"
    assert [(s.name, s.why.split(" (")[0]) for s in found.skipped] == [
        ("release", "a one-off command run before a release, not a worker"), ("piped", "`|` needs a shell"),
        ("_private", "not a worker group name")]


def test_without_a_procfile_the_dependencies_make_the_groups() -> None:
    found = detect({"Gemfile.lock": "  specs:\n    sidekiq (7.2.4)\n",
                    "config/sidekiq.yml": ":concurrency: 8\n:queues: [[critical, 2], default]\n",
                    "requirements.txt": "celery==5.3\nrq\n"})
    sidekiq, celery, rq = found.groups
    assert (sidekiq.command, sidekiq.config, sidekiq.threads) == (("bundle", "exec", "sidekiq"),
                                                                  "config/sidekiq.yml", 8)
    assert sidekiq.queues == tuple(q(("critical", 2), "default"))
    assert (celery.kind, celery.placeholder, rq.kind, rq.command) == ("celery", True, "rq", ())
    assert detect({}).groups == ()
