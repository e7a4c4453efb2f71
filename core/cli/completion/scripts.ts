// The completion scripts, one per shell. Each asks `ktctl __complete WORDS... CURRENT` for the
// candidates, so every command, plugin commands included, and values from the cluster complete the
// same way in every shell, and a new plugin needs no new script.

export const SHELLS = ["bash", "zsh", "fish", "powershell"] as const;
export type Shell = (typeof SHELLS)[number];

/** How to install each script, for `ktctl completion --help` and docs/completion.md. */
export const INSTALL_LINES: Record<Shell, string> = {
  bash: "echo 'source <(ktctl completion bash)' >> ~/.bashrc",
  zsh: "echo 'source <(ktctl completion zsh)' >> ~/.zshrc   # after compinit",
  fish: "ktctl completion fish > ~/.config/fish/completions/ktctl.fish",
  powershell: "ktctl completion powershell | Out-String | Invoke-Expression   # add to $PROFILE to keep it",
};

export function completionScript(shell: Shell, program = "ktctl"): string {
  switch (shell) {
    case "bash":
      return `# bash completion for ${program}
_${program}_complete() {
  local IFS=$'\\n'
  COMPREPLY=($(${program} __complete -- "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _${program}_complete ${program}
`;
    case "zsh":
      return `#compdef ${program}
_${program}_complete() {
  local -a candidates
  candidates=("\${(@f)$(${program} __complete -- "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  compadd -a candidates
}
compdef _${program}_complete ${program}
`;
    case "fish":
      return `# fish completion for ${program}
complete -c ${program} -f -a '(${program} __complete -- (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
`;
    case "powershell":
      return `# PowerShell completion for ${program}
Register-ArgumentCompleter -Native -CommandName '${program}', '${program}.exe' -ScriptBlock {
  param($wordToComplete, $commandAst, $cursorPosition)
  $words = @($commandAst.CommandElements | Select-Object -Skip 1 | ForEach-Object { $_.ToString() })
  if ($wordToComplete -eq '') { $words += '""' }
  & '${program}' __complete -- @words 2>$null | ForEach-Object {
    [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)
  }
}
`;
  }
}
