// The integration test runner (doctest). Tests start real processes on free
// loopback ports: redis-server, strangler-echo upstreams and build/strangler.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <signal.h>

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  doctest::Context context(argc, argv);
  return context.run();
}
