complete -c backstop-sweep -l older-than -d 'Remove entries older than this: 90s, 30m, 24h, 2d, 1w (as a config file writes durations)' -r
complete -c backstop-sweep -l exclude -d 'Leave entries matching this glob (relative to ROOT) alone; repeatable' -r
complete -c backstop-sweep -l byte-goal -d 'Pressure mode: remove the oldest eligible files until this much is freed (10GiB, 500MB, 4096B)' -r
complete -c backstop-sweep -l age-by -d 'Which timestamp makes an entry old (default: the newer of mtime and ctime, as systemd-tmpfiles, so files extracted with old mtimes are not taken)' -r -f -a "mtime-ctime\t'The newer of modification and change time'
mtime\t'Modification time'
newest\t'Newest of access, modification and change time'"
complete -c backstop-sweep -l threads -d 'Worker threads (0: twice the cores, at least 8: see the README)' -r
complete -c backstop-sweep -l metrics-textfile -d 'Add this run to the counters kept in a node_exporter textfile (a name ending in .prom in the textfile collector\'s directory): runs by outcome, files and bytes freed, skips and errors by reason, duration, last success. The file is read back, added to and replaced atomically; a file some other program wrote is refused' -r -F
complete -c backstop-sweep -l timer-interval -d 'How often a timer runs this sweep (with --metrics-textfile): written as backstop_sweep_interval_seconds, so an alert can tell when a sweep is overdue' -r
complete -c backstop-sweep -l completions -d 'Print a completion script for SHELL and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c backstop-sweep -l dry-run -d 'Report what would be removed, remove nothing'
complete -c backstop-sweep -l keep-empty-dirs -d 'Keep directories the sweep leaves empty'
complete -c backstop-sweep -l no-preserve-root -d 'Sweep even when ROOT is /'
complete -c backstop-sweep -l allow-pseudo-fs -d 'Sweep even when ROOT is on a pseudo-filesystem (proc, sysfs, devtmpfs, cgroup, …)'
complete -c backstop-sweep -l json -d 'Print the full report as JSON instead of the summary'
complete -c backstop-sweep -l man -d 'Print the man page (roff) and exit'
complete -c backstop-sweep -s h -l help -d 'Print help (see more with \'--help\')'
complete -c backstop-sweep -s V -l version -d 'Print version'
