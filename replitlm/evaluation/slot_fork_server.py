"""The fork server of a root sandbox slot (see sandbox.py); the standard library only.

The base interpreter runs this file's text with `-I -S -B -c`, as root, inside the slot's prepared mount
namespace, with a SOCK_SEQPACKET socket and the host's network namespace as its arguments. It never runs a sample itself: for each request
(argv, env, cwd, uid, rlimits, and the sample's stdout and stderr as passed file descriptors) it forks
  C  a new session that unshares the pid, ipc and mount namespaces (the slot's network namespace, made
     once, has no interface up: no sample can leave anything there, as all its processes die), and forks
  G  pid 1 of the new pid namespace (root; killed with C; it mounts /proc and reaps), which forks
  P  the sample: limits set, groups cleared, setresgid/setresuid to the slot's uid, no_new_privs, stdin
     /dev/null, every other descriptor closed; then it execs argv, or, when argv is this very interpreter
     with the same flags and a script, runs the script in this fresh fork instead of starting Python again
     (what a new `python -I -S -B main.py` would do: `__main__`, sys.argv, the exit status of an exception
     or SystemExit, threads joined, atexit handlers, flushed output).
It answers {"pid": C} at once and {"status": C's exit status} when C ends; the harness kills C's process
group on timeout. An empty read (the harness has gone) ends the server.
"""

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import sys

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
libc = ctypes.CDLL(None, use_errno=True)


def check(result):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def exit_code(status):
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # a death by signal n reads as 128 + n, as from a shell


def serve(sock):
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        if not message:
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            try:
                start(sock, request, fds)
            finally:
                os._exit(125)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        sock.send(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode())


def start(sock, request, fds):
    """C: its own session and namespaces; waits for G and exits as it did."""
    sock.detach()  # the fd is closed below; the object must not close a reused number later
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    if request["network"]:
        os.dup2(HOST_NETWORK, 3)  # kept until setns below
    os.closerange(4 if request["network"] else 3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    os.setsid()
    if request["network"]:  # the slot's namespace has no network: this sample may use the host's
        check(libc.setns(3, CLONE_NEWNET))
        os.close(3)
    check(libc.unshare(CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNS))
    init = os.fork()
    if init:
        _, status = os.waitpid(init, 0)
        os._exit(exit_code(status))
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))  # G dies with C (the harness kills C)
    check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None))
    program = os.fork()
    if program == 0:
        run(request)
    while True:  # pid 1 reaps every orphan; ends (and the namespace with it) when the program ends
        pid, status = os.wait()
        if pid == program:
            os._exit(exit_code(status))


def run(request):
    """P: the sample itself, unprivileged."""
    for name, value in request["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    uid = request["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    # Changing uid made it non-dumpable (its /proc/self/* root's): as a program exec'd by that uid is.
    check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
    os.chdir(request["cwd"])
    argv, env = request["argv"], request["env"]
    if argv[:-1] == [sys.executable, *FLAGS] and not argv[-1].startswith("-"):
        run_python(argv[-1], env)
    for number in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; an exec'd program must not
        signal.signal(number, signal.SIG_DFL)
    os.execvpe(argv[0], argv, env)


def run_python(script, env):
    import builtins
    import types

    os.environ.clear()
    os.environ.update(env)
    path = os.path.abspath(script)
    sys.argv = [script]
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = path, builtins
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as f:
            source = f.read()
        exec(compile(source, path, "exec"), main.__dict__)
    except SystemExit as exc:
        code = exit_status(exc.code)
    except BaseException as exc:
        exc = exc.with_traceback(exc.__traceback__.tb_next)  # without this function's frame
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = 1
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        import atexit

        atexit._run_exitfuncs()
    except SystemExit as exc:
        code = exit_status(exc.code)
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = code or 120
    os._exit(code)


def exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


FLAGS = ["-I", "-S", "-B"]  # this server's own flags: sandbox.python_command() gives the same

if __name__ == "__main__":
    assert "random" not in sys.modules  # forks would share its state
    server = socket.socket(fileno=int(sys.argv[1]))
    HOST_NETWORK = int(sys.argv[2])  # the host's network namespace, for samples allowed the network
    print("ready", flush=True)
    serve(server)
