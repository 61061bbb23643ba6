require "capistrano/scm/plugin"
require "shellwords"

# SCM plugin: the release is `git archive <commit>` of a local repository, uploaded to every
# host and extracted into the new release directory (the hosts have no route to the repository).
module Capistrano
  class ArchiveSCM < Capistrano::SCM::Plugin
    def set_defaults
      set_if_empty :archive_dir, -> { ENV.fetch("WORK") }
    end

    def register_hooks
      after "deploy:new_release_path", "archive:create_release"
      before "deploy:set_current_revision", "archive:set_current_revision"
    end

    def define_tasks
      eval_rakefile File.expand_path("archive.rake", __dir__)
    end
  end
end
