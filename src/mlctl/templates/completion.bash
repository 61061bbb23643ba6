# bash completion for mlctl (tasks, their options, environment names from environments.yaml).
# Use: `source` it from ~/.bashrc (README.md, "Shell completion" shows where it is installed).
# Static: a unit test checks that it names every task and option of mlctl's registry.

_mlctl_envs() {
    local f="${MLCTL_INVENTORY:-}" d="$PWD" i
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        case "${COMP_WORDS[i]}" in --inventory | -i) f="${COMP_WORDS[i + 1]}" ;; esac
    done
    if [ -z "$f" ]; then
        while :; do
            if [ -f "$d/environments.yaml" ]; then f="$d/environments.yaml"; break; fi
            [ "$d" = / ] && break
            d="$(dirname "$d")"
        done
    fi
    [ -f "$f" ] && sed -n '/^environments:/,/^[^ #]/s/^  \([a-z][a-z0-9_-]*\):.*/\1/p' "$f"
}

_mlctl() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD - 1]}"
    local tasks="deploy rollback check diag status bounce migrate snapshot restore releases logs monitor lock unlock setup config manage shell dbshell ssh maintenance init"
    local global="--inventory -i --host --set --log-dir -v --debug --verbose --help -h"
    local task="" w opts
    for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
        case " $tasks " in *" $w "*) task="$w"; break ;; esac
    done
    case "$prev" in
        --inventory | -i | --log-dir | --prometheus) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --db) COMPREPLY=($(compgen -W "auto code-only reverse restore" -- "$cur")); return ;;
        --service) COMPREPLY=($(compgen -W "app nginx-access nginx-error" -- "$cur")); return ;;
        --ci) COMPREPLY=($(compgen -W "github gitlab" -- "$cur")); return ;;
        --ref | --to | --host | --set | --since | --lines | -n | --interval | --window | --webhook | --env | --command | -c | --message) return ;;
    esac
    if [ -z "$task" ]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$tasks $(_mlctl_envs 2>/dev/null)" -- "$cur"))
        fi
        return
    fi
    case "$task" in
        deploy) opts="--ref --dry-run --skip-tests --maintenance --lock-wait --yes -y" ;;
        rollback) opts="--to --db --lock-wait --yes -y" ;;
        check) opts="--json" ;;
        diag) opts="--json --watch --interval" ;;
        status) opts="" ;;
        bounce) opts="--yes -y --process" ;;
        migrate) opts="--yes -y" ;;
        snapshot) opts="" ;;
        restore) opts="--yes -y" ;;
        releases) opts="--json" ;;
        logs) opts="--service --since --lines -n --follow -f" ;;
        monitor) opts="--once --watch --interval --window --webhook --prometheus" ;;
        lock) opts="" ;;
        unlock) opts="--force --yes -y" ;;
        setup) opts="--yes -y" ;;
        config) opts="--json" ;;
        manage) opts="--all-hosts --env --yes -y" ;;
        shell) opts="--command -c --tty -t --yes -y" ;;
        dbshell) opts="--command -c --tty -t --yes -y" ;;
        ssh) opts="--command -c --tty -t --yes -y" ;;
        maintenance) opts="--message --yes -y" ;;
        init) opts="--force --ci" ;;
    esac
    if [ "$task" = maintenance ] && [[ $cur != -* ]]; then
        COMPREPLY=($(compgen -W "on off" -- "$cur"))
    elif [ "$task" = init ] && [[ $cur != -* ]]; then
        COMPREPLY=($(compgen -d -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
    fi
}

complete -F _mlctl mlctl
