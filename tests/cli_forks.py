"""Many command lines of one program in one Python process: the program's module is imported
once, then each command line runs in a forked child with its own stdout, stderr, working
directory, user and exit status, as a fresh process would, without importing JAX again each
time (~3 s a process here). Use for refusals, which happen before any JAX computation.

    python tests/cli_forks.py MODULE CASES_JSON RESULTS_JSON   (results: [{code, out, err}])

CASES_JSON: [{"argv": [...], "cwd": DIR, "uid": null | user id}, ...]; argv[0] is the program
name; MODULE's `main(argv)` runs it.
"""

import importlib
import json
import os
import sys
import tempfile
import traceback


def _child(main, case, out_path, err_path):
  for fd, path in ((1, out_path), (2, err_path)):
    os.dup2(os.open(path, os.O_WRONLY | os.O_TRUNC), fd)
  os.chdir(case['cwd'])
  if case.get('uid') is not None:  # a non-root user for real permission errors
    os.setgroups([])
    os.setgid(case['uid'])
    os.setuid(case['uid'])
  try:
    code = main(case['argv'])
  except SystemExit as stop:
    code = stop.code
  except BaseException:  # noqa: BLE001 (a traceback is what the test looks for)
    traceback.print_exc()
    code = 1
  if isinstance(code, str):  # sys.exit('message'): Python prints it and exits 1
    print(code, file=sys.stderr)
    code = 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code or 0)


def run_cases(module_name, cases):
  main = importlib.import_module(module_name).main
  results = []
  with tempfile.TemporaryDirectory() as folder:
    for i, case in enumerate(cases):
      out_path, err_path = (os.path.join(folder, f'{i}.{kind}') for kind in ('out', 'err'))
      for path in (out_path, err_path):
        open(path, 'w').close()
        os.chmod(path, 0o666)  # writable by the case's user
      sys.stdout.flush()
      pid = os.fork()
      if pid == 0:
        _child(main, case, out_path, err_path)
      _, status = os.waitpid(pid, 0)
      with open(out_path) as out, open(err_path) as err:
        results.append({'code': os.waitstatus_to_exitcode(status), 'out': out.read(),
                        'err': err.read()})
  return results


if __name__ == '__main__':
  with open(sys.argv[2]) as f:
    cases = json.load(f)
  results = run_cases(sys.argv[1], cases)
  with open(sys.argv[3], 'w') as f:
    json.dump(results, f)
