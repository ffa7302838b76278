"""`faceswap-pl completion bash|zsh`: a shell completion script, generated from the parsers.

Commands, their actions and options complete; ``--config`` offers the shipped config names and files;
``fit`` / ``validate`` complete their most used options (``faceswap-pl fit --help`` lists all).
"""

from __future__ import annotations

import argparse

from faceswap_pl.configs import shipped_names

LIGHTNING_OPTIONS = ("--config", "--ckpt_path", "--print_config", "--help", "--model.backbone", "--model.image_size",
                     "--model.max_iterations", "--data.init_args.train", "--data.init_args.val", "--trainer.devices",
                     "--trainer.strategy", "--trainer.precision", "--seed_everything")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for action in parser._actions for o in action.option_strings if o.startswith("--"))


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def words(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """``{"": commands, "swap": its options, "runs": its actions, "runs compare": its options, ...}``."""
    table = {"": sorted(_subparsers(parser)) + _options(parser)}
    for name, sub in _subparsers(parser).items():
        actions = _subparsers(sub)
        table[name] = sorted(actions) + _options(sub) if name not in ("fit", "validate") else list(LIGHTNING_OPTIONS)
        for action, parser_of_action in actions.items():
            table[f"{name} {action}"] = _options(parser_of_action)
    return table


def bash_script(parser: argparse.ArgumentParser) -> str:
    cases = "\n".join(f'        "{key}") candidates="{" ".join(values)}" ;;' for key, values in words(parser).items())
    configs = " ".join(shipped_names("experiments"))
    return f"""# faceswap-pl completion (bash; zsh: autoload -U bashcompinit && bashcompinit first)
_faceswap_pl() {{
    local cur prev key="" candidates word
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [[ "$prev" == "--config" ]]; then
        COMPREPLY=($(compgen -W "{configs}" -- "$cur") $(compgen -f -- "$cur"))
        return
    fi
    for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        [[ "$word" == -* ]] && break
        if [[ -z "$key" ]]; then key="$word"; else key="$key $word"; break; fi
    done
    case "$key" in
{cases}
        *) candidates="" ;;
    esac
    if [[ -n "$candidates" && ( "$cur" == -* || -z "$cur" ) ]] || [[ -z "$key" || "$key" != *" "* ]]; then
        COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
    fi
    [[ ${{#COMPREPLY[@]}} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))
}}
complete -F _faceswap_pl faceswap-pl
"""


def cmd_completion(args: argparse.Namespace) -> int:
    script = bash_script(args.root_parser)  # the whole command line's parser (build_parser sets it)
    if args.shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    print(script, end="")
    return 0


def add_parser(sub) -> None:
    completion = sub.add_parser("completion", help="print a shell completion script: "
                                "eval \"$(faceswap-pl completion bash)\" (in ~/.bashrc, or zsh)")
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(func=cmd_completion)
