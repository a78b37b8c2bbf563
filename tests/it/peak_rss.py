"""Runs a command and prints {"exit_code", "peak_rss_mib"} as JSON: the peak resident set of
that very process, from wait4(2). Its stdout is discarded, its stderr passed through."""
import json
import os
import subprocess
import sys

proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"exit_code": os.waitstatus_to_exitcode(status),
                  "peak_rss_mib": usage.ru_maxrss / 1024}))
