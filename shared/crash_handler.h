// Crash reports on stderr: on a fatal signal, one JSON line naming the
// signal, process and role, then a backtrace, then the default action (so
// the exit status still says which signal killed the process).
#pragma once

namespace strangler {

// Installs the handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT.
// `role` must stay valid for the life of the process.
void installCrashHandler(const char* role);

}  // namespace strangler
