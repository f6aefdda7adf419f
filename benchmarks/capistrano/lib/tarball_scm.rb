# The code of a release comes from the same `git archive` tarball deploytool uploads (BENCH_TARBALL):
# uploaded once per host into releases/, unpacked into the new release, removed. The commit it was
# made from (BENCH_REVISION) is what deploy:set_current_revision writes to REVISION.
require "capistrano/scm/plugin"

class TarballSCM < Capistrano::SCM::Plugin
  def register_hooks
    after "deploy:new_release_path", "tarball:create_release"
    before "deploy:set_current_revision", "tarball:set_current_revision"
  end

  def define_tasks
    namespace :tarball do
      task :create_release do
        tarball = ENV.fetch("BENCH_TARBALL")
        on release_roles(:all) do
          remote = "#{releases_path}/.#{File.basename(release_path)}.tar.gz"
          execute :mkdir, "-p", release_path
          upload! tarball, remote
          execute :tar, "-xzf", remote, "-C", release_path
          execute :rm, "-f", remote
        end
      end

      task :set_current_revision do
        set :current_revision, ENV.fetch("BENCH_REVISION")
      end
    end
  end
end
