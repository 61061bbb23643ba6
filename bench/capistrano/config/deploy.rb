# The same deploy as bench/floor.sh and bench/ansible/deploy.yml: release into
# releases/<timestamp>-<commit>, the shared .env/media/logs linked, the venv reused while
# requirements.txt is unchanged (else built from a wheelhouse resolved on this machine),
# collectstatic, migrate when the migrations changed, `current` switched, gunicorn restarted,
# then a health check (/healthz names the new commit, / answers below 500); a failed check
# points `current` back at the previous release and restarts again.
lock "~> 3.17"

set :application, "djangoapp"
set :deploy_to, ENV.fetch("DEPLOY_TO", "/srv/djangoapp")
set :repo_path_local, ENV.fetch("REPO")
set :commit, ENV.fetch("COMMIT")
set :unit, ENV.fetch("UNIT", "gunicorn-djangoapp")
set :linked_files, %w[.env]
set :linked_dirs, %w[media logs]
set :migration_dirs, %w[notes/migrations]
set :keep_releases, 5
set :log_level, :info
set :format_options, log_file: File.join(ENV.fetch("WORK"), "capistrano.log")

set :ssh_options, {
  keys: [ENV.fetch("IDENTITY")],
  keys_only: true,
  auth_methods: %w[publickey],
  user_known_hosts_file: ENV.fetch("KNOWN_HOSTS"),
  global_known_hosts_file: "/dev/null",
  verify_host_key: :always, # the farm's pinned keys; an unknown or changed key stops the deploy
  non_interactive: true,
  timeout: 5,
}
