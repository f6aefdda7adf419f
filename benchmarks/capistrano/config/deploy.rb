# The same end state as `fab deploy` of the sample app (benchmarks/run checks it after every run):
# a release from the tarball, REVISION, linked_files/linked_dirs, `current` switched atomically, the
# unit files deploytool renders written when they differ (then daemon-reload), units enabled, the
# Sidekiq workers quieted before the switch, the workers restarted via systemctl, keep_releases.
# digest/sha2 loaded here, not autoloaded by Digest::SHA256 in SSHKit's per-host threads: that lazy load
# races in Ruby 3.1 ("Digest::Base cannot be directly inherited") and failed one run.
require "digest"
require "digest/sha2"
require "json"
require "shellwords"
require "stringio"

lock "~> 3.17"

BENCH = JSON.parse(File.read(ENV.fetch("BENCH_CONFIG")))

set :application, "sample"
set :deploy_to, BENCH.fetch("deploy_to")
set :keep_releases, BENCH.fetch("keep_releases")
set :linked_files, BENCH.fetch("linked_files")
set :linked_dirs, BENCH.fetch("linked_dirs")
set :format_options, log_file: ENV.fetch("BENCH_CAP_LOG", "/dev/null")

# The same key and known_hosts as deploytool, host keys checked strictly, never a prompt.
set :ssh_options, {
  user: BENCH.fetch("user"),
  keys: [BENCH.fetch("identity")],
  keys_only: true,
  auth_methods: %w[publickey],
  config: false,
  user_known_hosts_file: BENCH.fetch("known_hosts"),
  global_known_hosts_file: [],
  verify_host_key: :always,
  non_interactive: true,
  timeout: 30,
}

UNIT_DIR = "/etc/systemd/system"

namespace :workers do
  desc "Quiet the Sidekiq workers (SIGTSTP to the main process), as capistrano-sidekiq does"
  task :quiet do
    on roles(:app) do |host|
      units = BENCH.fetch("hosts").fetch(host.properties.bench_name).fetch("quiet")
      execute :sudo, "-n", :systemctl, "kill", "--kill-whom=main", "--signal=SIGTSTP", *units.map(&:shellescape)
    end
  end

  desc "Write the unit files that differ, daemon-reload if one did, enable the instances and the target"
  task :units do
    on roles(:app) do |host|
      spec = BENCH.fetch("hosts").fetch(host.properties.bench_name)
      files = spec.fetch("files") # name => local path of the rendered unit
      names = files.keys.sort
      sums = capture(:sha256sum, *names.map { |n| "#{UNIT_DIR}/#{n}" }, "2>/dev/null", "||", "true")
      on_host = sums.lines.to_h { |l| s, path = l.split; [File.basename(path), s] }
      changed = names.reject { |n| on_host[n] == Digest::SHA256.file(files[n]).hexdigest }
      changed.each do |n|
        tmp = "/tmp/.bench-unit-#{n}"
        upload! files[n], tmp
        execute :sudo, "-n", :install, "-m", "0644", tmp, "#{UNIT_DIR}/#{n}"
        execute :rm, "-f", tmp
      end
      execute :sudo, "-n", :systemctl, "daemon-reload" if changed.any?
      execute :sudo, "-n", :systemctl, "enable", "--quiet", spec.fetch("target"), *spec.fetch("units")
    end
  end

  desc "Restart the workers (systemd waits for each to drain and to be up again)"
  task :restart do
    on roles(:app) do |host|
      units = BENCH.fetch("hosts").fetch(host.properties.bench_name).fetch("units")
      execute :sudo, "-n", :systemctl, "restart", *units
    end
  end
end

before "deploy:publishing", "workers:quiet"
after "deploy:published", "workers:units"
after "workers:units", "workers:restart"
