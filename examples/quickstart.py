"""The quick start: Python code in the embedded sandbox, with timeouts that really kill."""

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import SandboxTimeoutError

with SandboxSession(lang="python", execution_timeout=5.0, verbose=True) as session:
    print(session.run("print('Hello, World!')").stdout)
    result = session.run("import time; time.sleep(15); print('slept 15 s')", timeout=20.0)
    print(result.stdout)
    try:
        session.run("while True: pass", timeout=2.0)
    except SandboxTimeoutError:
        print("terminated")
    print(session.run("print('the session is still usable')").stdout)
