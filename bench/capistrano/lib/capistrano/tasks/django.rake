# The app's steps, hooked into Capistrano's deploy flow.
require "fileutils"
require "shellwords"

WHEELS = Mutex.new
WHEELS_TAR = {}
PREVIOUS = {} # host name → the release `current` named before the switch (SSHKit copies hosts)

# requirements.txt of the commit resolved into a wheelhouse for the hosts' Python, once per run.
def wheels_tarball
  WHEELS.synchronize { WHEELS_TAR[:path] ||= resolve_wheels }
end

def resolve_wheels
  dir = File.join(fetch(:archive_dir), "wheels-#{fetch(:commit)[0, 12]}")
  FileUtils.mkdir_p(dir)
  req = File.join(dir, "requirements.txt")
  show = ["git", "-C", fetch(:repo_path_local), "show", "#{fetch(:commit)}:requirements.txt"]
  File.write(req, IO.popen(show, &:read))
  pyver = ENV.fetch("PYVER")
  platforms = ENV.fetch("PLATFORMS").split.flat_map { |p| ["--platform", p] }
  system("python3", "-m", "pip", "download", "--disable-pip-version-check", "-q",
         "--only-binary=:all:", "--dest", dir, "-r", req, "--python-version", pyver,
         "--implementation", "cp", "--abi", "cp#{pyver.delete(".")}", *platforms,
         exception: true)
  system("tar", "-cf", "#{dir}.tar", "-C", dir, ".", exception: true)
  "#{dir}.tar"
end

def build_venv(venv, req)
  wheels = "#{venv}.wheels"
  upload! wheels_tarball, "#{wheels}.tar"
  execute :mkdir, "-p", wheels
  execute :tar, "-xf", "#{wheels}.tar", "-C", wheels
  execute "/usr/bin/python3", "-m", "venv", venv
  execute "#{venv}/bin/pip", "install", "-q", "--disable-pip-version-check",
          "--no-index", "--find-links", wheels, "-r", req
  execute :rm, "-rf", wheels, "#{wheels}.tar"
end

def manage(release, *args)
  "cd #{release.to_s.shellescape} && set -a && . ./.env && set +a && " \
    "./.venv/bin/python manage.py #{args.join(" ")}"
end

def swap_current(target)
  tmp = "#{current_path}.new"
  execute :ln, "-sfn", target, tmp
  execute :mv, "-Tf", tmp, current_path
end

# On a two-slot host the live slot: see bench/app-restart.sh.
def restart_app
  execute "/usr/local/sbin/bench-restart-app", fetch(:deploy_to), fetch(:unit)
end

namespace :django do
  desc "Link the venv: the current release's while requirements.txt is unchanged, else a new one"
  task :venv do
    on release_roles(:app) do
      req = release_path.join("requirements.txt")
      if test("cmp -s #{req} #{current_path}/requirements.txt")
        venv = capture(:readlink, current_path.join(".venv"))
      else
        venv = deploy_path.join("venvs", capture(:sha256sum, req)[0, 16])
        build_venv(venv, req) unless test("[ -x #{venv}/bin/python ]")
      end
      execute :ln, "-sfn", venv, release_path.join(".venv")
    end
  end

  desc "collectstatic into the release"
  task :collectstatic do
    on(release_roles(:web)) { execute manage(release_path, "collectstatic", "--noinput", "-v", "0") }
  end

  desc "migrate, when the release's migrations differ from the current release's"
  task :migrate do
    on release_roles(:db) do
      same = fetch(:migration_dirs).all? do |dir|
        test("diff -qr -x __pycache__ #{current_path}/#{dir} #{release_path}/#{dir}")
      end
      execute manage(release_path, "migrate", "--noinput", "-v", "0") unless same
    end
  end

  task :remember_current do
    on release_roles(:app) do |host|
      PREVIOUS[host.hostname] = capture(:readlink, current_path) if test("[ -L #{current_path} ]")
    end
  end

  desc "Restart gunicorn (bench-restart-app)"
  task :restart do
    on(release_roles(:app)) { restart_app }
  end

  desc "Wait until nginx serves the new commit on /healthz and / answers below 500"
  task :health do
    on release_roles(:web) do
      deadline = Time.now + 30
      until capture(:curl, "-sS", "--max-time", "5", "http://127.0.0.1/healthz",
                    raise_on_non_zero_exit: false).include?(fetch(:commit))
        raise "health: #{fetch(:commit)[0, 12]} not served after 30 s" if Time.now > deadline
        sleep 0.1
      end
      code = capture(:curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                     "http://127.0.0.1/", raise_on_non_zero_exit: false).to_i
      raise "health: GET / answered #{code}" unless code.between?(200, 499)
    end
  end

  desc "After a failed deploy, point current back at the previous release and restart"
  task :revert do
    on release_roles(:app) do |host|
      previous = PREVIOUS[host.hostname]
      next if previous.nil? || capture(:readlink, current_path) == previous
      swap_current(previous)
      restart_app
    end
  end
end

after "deploy:symlink:shared", "django:venv"
after "django:venv", "django:collectstatic"
after "django:collectstatic", "django:migrate"
before "deploy:symlink:release", "django:remember_current"
after "deploy:publishing", "django:restart"
after "django:restart", "django:health"
after "deploy:failed", "django:revert"
