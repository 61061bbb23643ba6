# Tasks of the archive SCM plugin (loaded by lib/capistrano/archive_scm.rb).
namespace :archive do
  desc "Archive the commit locally, upload it and extract it into the release directory"
  task :create_release do
    # Release names like the other tools' (<timestamp>-<commit>), so every tool reads them.
    set_release_path("#{now}-#{fetch(:commit)[0, 12]}")
    tarball = File.join(fetch(:archive_dir), "release-#{fetch(:release_timestamp)}.tar.gz")
    run_locally do
      execute "git -C #{fetch(:repo_path_local).shellescape} archive --format=tar " \
              "#{fetch(:commit).shellescape} | gzip -1 > #{tarball.shellescape}"
    end
    on release_roles(:all) do
      remote = "/tmp/#{File.basename(tarball)}"
      upload! tarball, remote
      execute :mkdir, "-p", release_path
      execute :tar, "-xzf", remote, "-C", release_path, "--no-same-owner"
      execute :rm, "-f", remote
    end
  end

  task :set_current_revision do
    set :current_revision, fetch(:commit)
  end
end
