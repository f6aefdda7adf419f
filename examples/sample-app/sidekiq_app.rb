# The sample app's Sidekiq worker: `sidekiq -r ./sidekiq_app.rb -c N -q critical,2 -q default -t 25`,
# with REDIS_URL in the environment (Sidekiq reads it itself). Under systemd (Type=notify) Sidekiq
# reports readiness and stopping through NOTIFY_SOCKET on its own.
require "sidekiq"

# Debian's redis gem warns about Sidekiq 6.4's call style on every fetch; keep the journal readable.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

# Each run of a job is recorded, so a client can count completions, missing jobs and duplicates.
class SampleJob
  include Sidekiq::Worker

  # `seconds` lets a test run one long job (e.g. to watch it finish while the worker is quiet).
  def perform(id, seconds = nil)
    Sidekiq.redis { |redis| redis.sadd("sample:started:sidekiq", id) }
    sleep Float(seconds || ENV.fetch("SAMPLE_JOB_SECONDS", "0.05"))
    Sidekiq.redis do |redis|
      redis.sadd("sample:done:sidekiq", [id]) # an array: an Integer reply, no deprecation warning
      redis.hincrby("sample:runs:sidekiq", id, 1)
    end
  end
end
