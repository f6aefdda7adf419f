# The sample app's Sidekiq worker: `sidekiq -r ./sidekiq_app.rb -c N -q critical,2 -q default -t 25`,
# with REDIS_URL in the environment (Sidekiq reads it itself). Under systemd (Type=notify) Sidekiq
# reports readiness and stopping through NOTIFY_SOCKET on its own.
require "sidekiq"

# Each run of a job is recorded, so a client can count completions, missing jobs and duplicates.
class SampleJob
  include Sidekiq::Worker

  def perform(id)
    sleep Float(ENV.fetch("SAMPLE_JOB_SECONDS", "0.05"))
    Sidekiq.redis do |redis|
      redis.sadd("sample:done:sidekiq", [id]) # an array: an Integer reply, no deprecation warning
      redis.hincrby("sample:runs:sidekiq", id, 1)
    end
  end
end
