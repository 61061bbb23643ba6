#compdef mlctl
# zsh completion for mlctl (tasks, their options, environment names from environments.yaml).
# Use: copy it as _mlctl into a directory on $fpath before compinit, or `source` it after compinit
# — see README.md, "Shell completion". Static: a unit test checks that it names every task and
# option of mlctl's registry.

_mlctl_envs() {
    local f="${MLCTL_INVENTORY:-}" d="$PWD"
    if [[ -z $f ]]; then
        while true; do
            if [[ -f $d/environments.yaml ]]; then f=$d/environments.yaml; break; fi
            [[ $d == / ]] && break
            d=${d:h}
        done
    fi
    [[ -f $f ]] && sed -n '/^environments:/,/^[^ #]/s/^  \([a-z][a-z0-9_-]*\):.*/\1/p' "$f"
}

_mlctl() {
    local -a tasks envs opts
    tasks=(
        'deploy:build, migrate, switch and health-check a release'
        'rollback:switch back to the previous good release'
        'check:health checks per host (exit 0 ok, 1 warnings, 2 failures)'
        'diag:one-glance dashboard of every host'
        'status:one line per host: release, commit, age, health'
        'bounce:graceful restart of gunicorn; nginx -t then reload'
        'migrate:snapshot, migrate, snapshot on the current release'
        'snapshot:dump the database into backups/db'
        'restore:restore a database snapshot'
        'releases:list releases with status, commit, who and when'
        'logs:app, nginx-access or nginx-error logs from all hosts'
        'monitor:alerts: disk, memory, failed units, 5xx, errors, site down'
        'lock:show the deploy lock of every host'
        'unlock:release a stale deploy lock'
        'setup:provision bare hosts (idempotent)'
        'config:print the resolved configuration (secrets masked)'
        'manage:run a management command in the current release'
        'shell:Django's shell in the current release'
        'dbshell:the database client with the release's settings'
        'ssh:log in at the current release'
        'maintenance:nginx answers 503 with a maintenance page'
        'init:add mlctl to an existing Django project'
    )
    local global=(--inventory -i --host --set --log-dir -v --debug --verbose --help -h)
    local task="" w
    for w in ${words[2,CURRENT-1]}; do
        if (( ${tasks[(I)$w:*]} )); then task=$w; break; fi
    done
    if [[ -z $task ]]; then
        if [[ $PREFIX == -* ]]; then
            compadd -- $global --version
        else
            envs=(${(f)"$(_mlctl_envs 2>/dev/null)"})
            _describe -t tasks task tasks
            (( ${#envs} )) && compadd -X environment -a envs
        fi
        return
    fi
    case $task in
        deploy) opts=(--ref --dry-run --skip-tests --maintenance --lock-wait --yes -y) ;;
        rollback) opts=(--to --db --lock-wait --yes -y) ;;
        check) opts=(--json) ;;
        diag) opts=(--json --watch --interval) ;;
        status) opts=() ;;
        bounce) opts=(--yes -y --process) ;;
        migrate) opts=(--yes -y) ;;
        snapshot) opts=() ;;
        restore) opts=(--yes -y) ;;
        releases) opts=(--json) ;;
        logs) opts=(--service --since --lines -n --follow -f) ;;
        monitor) opts=(--once --watch --interval --window --webhook --prometheus) ;;
        lock) opts=() ;;
        unlock) opts=(--force --yes -y) ;;
        setup) opts=(--yes -y) ;;
        config) opts=(--json) ;;
        manage) opts=(--all-hosts --env --yes -y) ;;
        shell) opts=(--command -c --tty -t --yes -y) ;;
        dbshell) opts=(--command -c --tty -t --yes -y) ;;
        ssh) opts=(--command -c --tty -t --yes -y) ;;
        maintenance) opts=(--message --yes -y) ;;
        init) opts=(--force --ci) ;;
    esac
    if [[ $task == maintenance && $PREFIX != -* ]]; then
        compadd -- on off
    elif [[ $task == init && $PREFIX != -* ]]; then
        _files -/
    else
        compadd -- $opts $global
    fi
}

if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
    _mlctl "$@"
else
    compdef _mlctl mlctl
fi
