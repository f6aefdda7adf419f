# Reads Sidekiq's own keys and prints one JSON object. Runs ON A HOST of the app, in the release, with the
# Ruby of the app's `sidekiq` and its gems (Bundler's when the release has a Gemfile); sent by deploytool
# (deploytool/jobs/probe.py). Read only: no key is written, no job is run or moved.
#
# Usage: ruby - QUEUE...   (Redis from REDIS_URL, as Sidekiq itself reads it)
#
# Keys read (Sidekiq 6 and 7 alike): `queues` (set), `queue:<name>` (lists of JSON jobs, oldest last),
# `schedule`, `retry`, `dead` (sorted sets of JSON jobs), `processes` (set of identities), each process's
# hash (info JSON with tag/hostname/pid/concurrency/queues, busy, beat, quiet) and `<identity>:workers`
# (the jobs it runs now, JSON, with their queue).
require "json"
require "socket"
begin
  require "bundler/setup" if File.exist?("Gemfile")
rescue LoadError, StandardError
  nil # no Bundler: the system's gems, as the worker itself runs
end
require "sidekiq"

def unit_of(pid)
  # The systemd unit a local process runs in, from its cgroup path (its last `.service` part).
  File.readlines("/proc/#{pid}/cgroup").each do |line|
    found = line.strip.split("/").reverse.find { |part| part.end_with?(".service") }
    return found if found
  end
  nil
rescue SystemCallError
  nil
end

def seconds(value)
  # enqueued_at is seconds (Sidekiq <= 7) or milliseconds (Sidekiq 8).
  value = Float(value)
  value > 100_000_000_000 ? value / 1000.0 : value
end

RECENT = 60 # seconds: jobs whose last failure is this recent (deploytool.jobs.model.RECENT)

names = ARGV
now = Time.now.to_f
hostname = Socket.gethostname
report = {"system" => "sidekiq", "hostname" => hostname, "time" => now}

Sidekiq.redis do |conn|
  per_queue = Hash.new do |h, k|
    h[k] = {"scheduled" => 0, "retrying" => 0, "dead" => 0, "running" => 0, "failed_recently" => 0}
  end
  {"schedule" => "scheduled", "retry" => "retrying", "dead" => "dead"}.each do |key, field|
    conn.call("ZRANGE", key, "0", "-1").each do |entry|
      job = (JSON.parse(entry) rescue {})
      queue = job["queue"] || "?"
      per_queue[queue][field] += 1
      next if field == "scheduled"
      # Its last failure: a retry that failed again sets retried_at.
      last = job["retried_at"] || job["failed_at"]
      per_queue[queue]["failed_recently"] += 1 if last && seconds(last) >= now - RECENT
    end
  end

  workers = []
  conn.call("SMEMBERS", "processes").sort.each do |identity|
    info, busy, beat, quiet = conn.call("HMGET", identity, "info", "busy", "beat", "quiet")
    next if info.nil? # the set outlives a process that died without cleaning up; its hash expired
    info = JSON.parse(info)
    conn.call("HVALS", "#{identity}:workers").each do |work|
      queue = (JSON.parse(work)["queue"] rescue nil) || "?"
      per_queue[queue]["running"] += 1
    end
    local = info["hostname"] == hostname
    workers << {
      "name" => identity, "hostname" => info["hostname"], "pid" => info["pid"], "tag" => info["tag"].to_s,
      "queues" => info["queues"] || [], "concurrency" => info["concurrency"], "busy" => busy.to_i,
      "beat" => beat.to_f, "quiet" => quiet == "true", "unit" => (local ? unit_of(info["pid"]) : nil),
    }
  end

  queues = names.map do |name|
    oldest = conn.call("LINDEX", "queue:#{name}", "-1")
    enqueued = oldest && (JSON.parse(oldest)["enqueued_at"] rescue nil)
    {"name" => name, "queued" => conn.call("LLEN", "queue:#{name}"),
     "latency" => enqueued ? [now - seconds(enqueued), 0.0].max.round(3) : 0.0}.merge(per_queue[name])
  end
  others = (conn.call("SMEMBERS", "queues") - names).sort.map do |name|
    {"name" => name, "queued" => conn.call("LLEN", "queue:#{name}")}
  end
  report.merge!("queues" => queues, "other_queues" => others, "workers" => workers)
end

puts JSON.generate(report)
