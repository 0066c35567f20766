// Real parts for integration tests: processes on free ports (redis-server,
// echo upstreams, the strangler binary), and clients (libcurl, raw sockets).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <json/json.h>

namespace harness {

using Headers = std::vector<std::pair<std::string, std::string>>;
using Env = std::map<std::string, std::string>;

// The build folder (where build/strangler lives), found from this binary's path.
std::string buildDir();
int freePort();
// A socket listening on 127.0.0.1 with `backlog`, at a port the kernel picks.
int listenOnLoopback(int backlog, int& port);
std::string tempDir();  // a fresh folder, removed at exit
void sleepMs(int ms);
uint64_t fnv1a64(const std::string& data);
std::string fnvHex(uint64_t hash);
std::string readFile(const std::string& path);  // empty when it cannot be read
void writeFile(const std::string& path, const std::string& text);  // replaces what was there

// Runs `command` with the shell and returns its standard output. With
// `exit_status`, also the status pclose reports for it.
std::string runCommand(const std::string& command, int* exit_status = nullptr);

// Calls `done` every `interval_ms` until it returns true or `timeout_ms`
// have passed; says which wait gave up, naming it by `what`.
bool waitUntil(const std::function<bool()>& done, int timeout_ms, const std::string& what,
               int interval_ms = 20);

class Process {
 public:
  Process() = default;
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Starts `argv` with `env` added to this process's environment; stdout and
  // stderr go to the given files.
  void start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
             const std::string& stdout_path, const std::string& stderr_path);
  pid_t pid() const { return pid_; }
  void signal(int signal_number) const;
  // The exit status as waitpid reports it, or nothing after `timeout_ms`.
  // Once a binary from buildDir() has exited, a sanitizer report or a crash
  // report in its stderr (its workers' included) fails the test.
  std::optional<int> waitExit(int timeout_ms);
  void stop();  // SIGTERM, then SIGKILL after 10 s
  // For a test that crashes a worker on purpose: its crash report is expected.
  void expectCrashReport() { crash_expected_ = true; }

 private:
  void failOnReports() const;

  pid_t pid_ = -1;
  std::string stderr_path_;
  bool built_here_ = false;  // a binary from buildDir()
  bool crash_expected_ = false;
};

class RedisServer {
 public:
  RedisServer();  // started
  // Stops it, and starts it again on the same port with the same folder.
  void stop();
  void start();
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  // Runs one command with redis-cli; returns its output without the last newline.
  std::string cli(const std::vector<std::string>& arguments) const;

 private:
  int port_;
  std::string dir_;
  Process process_;
};

// A server process that prints "listening HOST:PORT" once it accepts.
class ListeningPeer {
 public:
  explicit ListeningPeer(const std::vector<std::string>& argv);
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  Process process_;
};

// The project's echo upstream (tests/support/echo_server.cc).
class EchoUpstream : public ListeningPeer {
 public:
  explicit EchoUpstream(const std::string& name);
  const std::string& name() const { return name_; }  // what it puts in each answer

 private:
  std::string name_;
};

// `rules_template` with each "{NAME}" replaced by the URL of the upstream NAME.
std::string fillInUrls(std::string rules_template, const std::vector<const EchoUpstream*>& upstreams);

// A Python test peer from tests/support (ws_echo.py, slow_sink.py, ...).
std::string supportScript(const std::string& name);
// Debian's interpreter, for every Python peer: python3-h2, hpack, hyperframe
// and python3-grpcio are installed for it (a python3 earlier in PATH, such as
// a pyenv shim, may not have them).
constexpr const char* kPython = "/usr/bin/python3";
// Runs the Python client tests/support/`script` with `arguments` (words for
// the shell) and returns its standard output.
std::string runSupportClient(const std::string& script, const std::string& arguments);

// What a command run to its end left behind.
struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs build/strangler with `arguments` and `env` to its end. A run that
// has not exited normally within `timeout_ms` fails the test.
CommandResult runStrangler(const std::vector<std::string>& arguments, const Env& env = {},
                           int timeout_ms = 20000);

struct ProxyOptions {
  std::string rules_json;  // written to a file and given as STRANGLER_RULES
  int workers = 1;
  std::map<std::string, std::string> env;  // extra or overriding variables
  bool private_redis = false;  // leave STRANGLER_REDIS_URL unset
  bool wait_ready = true;
  std::string binary;  // the strangler executable; empty: the one in the build folder
};

// Options for `workers` workers with `env` added, the rest as by default.
ProxyOptions proxyOptions(int workers, Env env = {});

class Proxy {
 public:
  Proxy(const RedisServer* redis, ProxyOptions options);
  ~Proxy();

  int port() const { return port_; }
  int adminPort() const { return admin_port_; }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  std::string adminUrl(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(admin_port_) + path;
  }
  const std::string& rulesPath() const { return rules_path_; }
  const std::string& prefix() const { return prefix_; }
  Process& process() { return process_; }

  bool ready() const;  // /readyz answers 200 now
  bool waitReady(int timeout_ms);
  // Waits until `workers` workers run, the one with pid `gone` not among
  // them, and the proxy is ready again.
  bool waitForReplacement(pid_t gone, size_t workers, int timeout_ms);
  std::vector<pid_t> workerPids() const;
  std::vector<Json::Value> accessLog() const;  // every line parsed; a line that is not JSON fails the test
  // The access log once it has `count` lines, or as it is after `timeout_ms`.
  std::vector<Json::Value> awaitAccessLog(size_t count, int timeout_ms = 5000) const;
  std::string processLog() const;
  std::string stdoutText() const;
  bool processLogHas(const std::string& text) const;
  bool waitForProcessLog(const std::string& text, int timeout_ms) const;
  // The /metrics text; empty when the scrape failed. No assertion: scraper threads call it.
  std::string metrics() const;
  bool waitForMetric(const std::string& series, double value, int timeout_ms = 5000) const;

 private:
  int port_;
  int admin_port_;
  std::string dir_;
  std::string rules_path_;
  std::string prefix_;
  Process process_;
};

// Redis, echo upstreams with the given names, and a proxy whose rules route
// to them: the stack most tests start from. Its rules are a template for
// fillInUrls.
struct EchoStack {
  EchoStack(const std::vector<std::string>& upstream_names, const std::string& rules_template,
            ProxyOptions options = {});

  const EchoUpstream& upstream(const std::string& name) const { return *upstreams.at(name); }
  // `rules_template` with the upstreams' URLs filled in.
  std::string rules(const std::string& rules_template) const;
  // Replaces the proxy's rules file (a SIGHUP then loads it).
  void writeRules(const std::string& rules_template) const {
    writeFile(proxy.rulesPath(), rules(rules_template));
  }

  RedisServer redis;
  std::map<std::string, std::unique_ptr<EchoUpstream>> upstreams;
  Proxy proxy;
};

struct Response {
  long status = 0;
  Headers headers;
  std::string body;
  std::string error;  // libcurl's, when the exchange failed
  long connects = 0;  // new connections libcurl opened for this request

  // The value of the first field of that name; none when it is absent, so a
  // missing field fails a check instead of crashing the test.
  std::optional<std::string> header(const std::string& name) const;
  Json::Value json() const;
};

// One HTTP/1.1 client with its own connection cache (keep-alive across calls).
class Client {
 public:
  Client();
  ~Client();
  Response request(const std::string& method, const std::string& url, const Headers& headers = {},
                   const std::optional<std::string>& body = std::nullopt, bool http10 = false);
  Response get(const std::string& url, const Headers& headers = {}) { return request("GET", url, headers); }

  // Over HTTP/2: by prior knowledge, or (`upgrade`) by an HTTP/1.1 Upgrade: h2c.
  Response requestHttp2(const std::string& method, const std::string& url, const Headers& headers = {},
                        const std::optional<std::string>& body = std::nullopt, bool upgrade = false);
  long httpVersion() const;  // of the last response: 10, 11, 20 (CURL_HTTP_VERSION_*) as libcurl reports

 private:
  Response perform(const std::string& method, const std::string& url, const Headers& headers,
                   const std::optional<std::string>& body, long version);
  void* curl_;
};

// A new connection to 127.0.0.1:`port`; a refused one fails the test. A
// `receive_buffer` sets SO_RCVBUF before the connect.
int connectTo(int port, int receive_buffer = 0);

// Sends `bytes` on a new connection and reads until the peer closes or
// `quiet_ms` pass without data.
std::string rawExchange(int port, const std::string& bytes, int quiet_ms = 1500, bool shutdown_write = false);

// Splits HTTP/1.1 responses out of raw bytes (Content-Length and chunked).
struct RawResponse {
  int status = 0;
  Headers headers;
  std::string body;
};
std::vector<RawResponse> parseResponses(const std::string& bytes);

Json::Value parseJson(const std::string& text);

// `text` with every `from` replaced by `to` (filling in rules templates).
std::string replaceAll(std::string text, const std::string& from, const std::string& to);
// "Name: value" for each [name, value] pair of a JSON array, in order.
std::vector<std::string> pairLines(const Json::Value& pairs);
// The headers an echo upstream says it received, as "Name: value" lines.
std::vector<std::string> receivedHeaders(const Json::Value& echo);
bool contains(const std::vector<std::string>& lines, const std::string& line);
size_t occurrences(const std::string& text, const std::string& needle);  // overlapping ones too
long peakRssKb(pid_t pid);
// The value of the /metrics sample named exactly `series` (name and labels); -1 when absent.
double metric(const std::string& text, const std::string& series);

// True in the sanitizer build (make sanitize), where every process is
// several times slower, so time bounds are stretched by kTimeScale.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
constexpr int kTimeScale = kSanitized ? 4 : 1;

// AddressSanitizer keeps freed blocks in a quarantine before reusing them,
// 256 MiB by default, which would hide any bound on a worker's memory. A
// proxy whose memory a test bounds gets these settings (its quarantine
// capped at kQuarantineMb), and memoryGrowthBoundKb adds room for that
// quarantine, its shadow and its redzones to the bound of the plain build:
// still far below what buffering a whole transfer would take.
constexpr long kQuarantineMb = 8;
std::map<std::string, std::string> memoryTestEnv();
constexpr long memoryGrowthBoundKb(long plain_kb) {
  return kSanitized ? plain_kb + 2 * kQuarantineMb * 1024 : plain_kb;
}

}  // namespace harness
