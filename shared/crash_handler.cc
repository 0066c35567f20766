// Crash reports on stderr, written with async-signal-safe calls only.
#include "shared/crash_handler.h"

#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>
#include <initializer_list>

namespace strangler {
namespace {

const char* g_role = "strangler";
char g_alternate_stack[64 * 1024];

// Formats a decimal number by hand: stdio is not async-signal-safe.
size_t formatNumber(char* out, long value) {
  char digits[24];
  size_t count = 0;
  bool negative = value < 0;
  unsigned long magnitude = negative ? static_cast<unsigned long>(-value) : static_cast<unsigned long>(value);
  do {
    digits[count++] = static_cast<char>('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude);
  size_t length = 0;
  if (negative) out[length++] = '-';
  while (count) out[length++] = digits[--count];
  return length;
}

void append(char* line, size_t& length, size_t capacity, const char* text) {
  size_t size = strlen(text);
  if (length + size >= capacity) size = capacity - length - 1;
  memcpy(line + length, text, size);
  length += size;
}

void onFatalSignal(int signal_number, siginfo_t* info, void*) {
  char line[512];
  size_t length = 0;
  char number[24];
  append(line, length, sizeof line, "{\"level\":\"fatal\",\"msg\":\"crashed\",\"signal\":");
  number[formatNumber(number, signal_number)] = '\0';
  append(line, length, sizeof line, number);
  append(line, length, sizeof line, ",\"signal_name\":\"");
  append(line, length, sizeof line, sigabbrev_np(signal_number) ? sigabbrev_np(signal_number) : "?");
  append(line, length, sizeof line, "\",\"pid\":");
  number[formatNumber(number, getpid())] = '\0';
  append(line, length, sizeof line, number);
  append(line, length, sizeof line, ",\"role\":\"");
  append(line, length, sizeof line, g_role);
  append(line, length, sizeof line, "\",\"fault_address\":\"0x");
  unsigned long address = reinterpret_cast<unsigned long>(info ? info->si_addr : nullptr);
  char hex[17];
  for (int i = 15; i >= 0; i--, address >>= 4) hex[i] = "0123456789abcdef"[address & 0xF];
  hex[16] = '\0';
  append(line, length, sizeof line, hex);
  append(line, length, sizeof line, "\"}\n");
  ssize_t ignored = write(STDERR_FILENO, line, length);

  void* frames[64];
  int depth = backtrace(frames, 64);
  backtrace_symbols_fd(frames, depth, STDERR_FILENO);
  (void)ignored;

  // Back to the default action, re-raised, so the parent sees the real signal.
  signal(signal_number, SIG_DFL);
  raise(signal_number);
}

}  // namespace

void installCrashHandler(const char* role) {
  g_role = role;

  // backtrace() loads libgcc on first use, which is not safe inside a handler.
  void* warm_up[1];
  backtrace(warm_up, 1);

  stack_t alternate = {};
  alternate.ss_sp = g_alternate_stack;
  alternate.ss_size = sizeof g_alternate_stack;
  sigaltstack(&alternate, nullptr);

  struct sigaction action = {};
  action.sa_sigaction = onFatalSignal;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  for (int signal_number : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    sigaction(signal_number, &action, nullptr);
  }
}

}  // namespace strangler
