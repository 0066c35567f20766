// Real parts for integration tests: processes on free ports and clients.
#include "tests/integration/harness.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace harness {
namespace {

std::vector<std::string> g_temp_dirs;

struct TempDirCleaner {
  ~TempDirCleaner() {
    if (getenv("STRANGLER_KEEP_TEST_FILES")) return;
    for (const std::string& dir : g_temp_dirs) {
      std::string command = "rm -rf '" + dir + "'";
      if (system(command.c_str()) != 0) fprintf(stderr, "could not remove %s\n", dir.c_str());
    }
  }
} g_cleaner;

std::atomic<int> g_prefix_counter{0};

sockaddr_in loopbackAddress(int port) {
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// A socket bound to 127.0.0.1 at a port the kernel picks, written to `port`.
int bindLoopback(int& port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = loopbackAddress(0);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) throw std::runtime_error("bind");
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  port = ntohs(address.sin_port);
  return fd;
}

// A loopback connection to `port`, or -1 when it is refused.
int openLoopback(int port, int receive_buffer) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (receive_buffer > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in address = loopbackAddress(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
  close(fd);
  return -1;
}

}  // namespace

std::string buildDir() {
  if (const char* dir = getenv("STRANGLER_BUILD_DIR")) return dir;
  char path[4096];
  ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
  std::string self(path, length > 0 ? static_cast<size_t>(length) : 0);
  // build/tests/integration_tests -> build
  std::string tests_dir = self.substr(0, self.rfind('/'));
  return tests_dir.substr(0, tests_dir.rfind('/'));
}

int freePort() {
  int port = 0;
  close(bindLoopback(port));
  return port;
}

int listenOnLoopback(int backlog, int& port) {
  int fd = bindLoopback(port);
  listen(fd, backlog);
  return fd;
}

std::string tempDir() {
  char pattern[] = "/tmp/strangler-it-XXXXXX";
  if (!mkdtemp(pattern)) throw std::runtime_error("mkdtemp");
  g_temp_dirs.push_back(pattern);
  return pattern;
}

void sleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

uint64_t fnv1a64(const std::string& data) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string fnvHex(uint64_t hash) {
  char text[17];
  snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

std::string readFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string runCommand(const std::string& command, int* exit_status) {
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen: " + command);
  std::string output;
  char buffer[4096];
  size_t count;
  while ((count = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, count);

  int status = pclose(pipe);
  if (exit_status) *exit_status = status;
  return output;
}

bool waitUntil(const std::function<bool()>& done, int timeout_ms, const std::string& what, int interval_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      MESSAGE("gave up after " << timeout_ms << " ms waiting for " << what);
      return false;
    }
    sleepMs(interval_ms);
  }
  return true;
}

Process::~Process() { stop(); }

void Process::start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                    const std::string& stdout_path, const std::string& stderr_path) {
  stderr_path_ = stderr_path;
  built_here_ = !argv.empty() && argv[0].rfind(buildDir() + "/", 0) == 0;
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork");
  if (pid_ > 0) return;

  // Whatever happens to the test run, the child does not outlive it.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The caller's own STRANGLER_* settings must not leak into a test.
  std::vector<std::string> inherited;
  for (char** entry = environ; *entry; entry++) {
    if (strncmp(*entry, "STRANGLER_", 10) == 0) inherited.emplace_back(*entry, strcspn(*entry, "="));
  }
  for (const std::string& name : inherited) unsetenv(name.c_str());
  for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
  int out = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  dup2(out, STDOUT_FILENO);
  dup2(err, STDERR_FILENO);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  fprintf(stderr, "exec %s failed: %s\n", args[0], strerror(errno));
  _exit(127);
}

void Process::signal(int signal_number) const {
  if (pid_ > 0) kill(pid_, signal_number);
}

std::optional<int> Process::waitExit(int timeout_ms) {
  if (pid_ <= 0) return std::nullopt;
  for (int waited = 0; waited <= timeout_ms; waited += 10) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      failOnReports();
      return status;
    }
    sleepMs(10);
  }
  return std::nullopt;
}

// The sanitizers write their reports to stderr (make sanitize runs them with
// halt_on_error, see scripts/run-tests); workers share the supervisor's stderr.
// The crash handler's line counts too: it takes over SIGSEGV from ASan.
void Process::failOnReports() const {
  if (!built_here_) return;
  std::string log = readFile(stderr_path_);
  std::vector<std::string> markers = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                      "ERROR: UndefinedBehaviorSanitizer", "runtime error:"};
  if (!crash_expected_) markers.push_back("\"msg\":\"crashed\"");
  for (const std::string& marker : markers) {
    size_t at = log.find(marker);
    if (at == std::string::npos) continue;
    size_t from = log.rfind('\n', at);
    from = from == std::string::npos ? 0 : from + 1;
    FAIL_CHECK("report in the stderr of " << stderr_path_ << ":\n" << log.substr(from, 4000));
    return;
  }
}

void Process::stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  if (waitExit(10000)) return;
  kill(pid_, SIGKILL);
  waitExit(5000);
}

RedisServer::RedisServer() : port_(freePort()), dir_(tempDir()) { start(); }

void RedisServer::start() {
  process_.start({"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", dir_},
                 {}, dir_ + "/redis.out", dir_ + "/redis.err");
  if (!waitUntil([&] { return cli({"PING"}) == "PONG"; }, 5000, "redis-server to answer PING", 10)) {
    throw std::runtime_error("redis-server did not start");
  }
}

void RedisServer::stop() { process_.stop(); }

std::string RedisServer::cli(const std::vector<std::string>& arguments) const {
  std::string command = "redis-cli -p " + std::to_string(port_);
  for (const std::string& argument : arguments) command += " '" + argument + "'";
  std::string output = runCommand(command + " 2>/dev/null");
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return output;
}

ListeningPeer::ListeningPeer(const std::vector<std::string>& argv) {
  std::string dir = tempDir();
  std::string out = dir + "/peer.out";
  process_.start(argv, {}, out, dir + "/peer.err");
  auto listening = [&] {
    std::string text = readFile(out);
    if (text.rfind("listening ", 0) != 0 || text.find('\n') == std::string::npos) return false;
    port_ = atoi(text.c_str() + text.rfind(':') + 1);
    return true;
  };
  // A Python peer on a busy machine can take seconds to import its modules.
  std::string command;
  for (const std::string& arg : argv) command += (command.empty() ? "" : " ") + arg;
  if (!waitUntil(listening, 10000, "'" + command + "' to listen", 10)) {
    throw std::runtime_error("test peer " + command + " did not start: " + readFile(dir + "/peer.err"));
  }
}

EchoUpstream::EchoUpstream(const std::string& name)
    : ListeningPeer({buildDir() + "/strangler-echo", "--name", name, "--listen", "127.0.0.1:0", "--quiet"}),
      name_(name) {}

std::string fillInUrls(std::string rules_template, const std::vector<const EchoUpstream*>& upstreams) {
  for (const EchoUpstream* upstream : upstreams) {
    rules_template = replaceAll(rules_template, "{" + upstream->name() + "}", upstream->url());
  }
  return rules_template;
}

std::string supportScript(const std::string& name) {
  return std::string(STRANGLER_SOURCE_DIR) + "/tests/support/" + name;
}

std::string runSupportClient(const std::string& script, const std::string& arguments) {
  return runCommand(std::string(kPython) + " '" + supportScript(script) + "' " + arguments);
}

CommandResult runStrangler(const std::vector<std::string>& arguments, const Env& env, int timeout_ms) {
  std::string dir = tempDir();
  std::vector<std::string> argv = {buildDir() + "/strangler"};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  Process process;
  process.start(argv, env, dir + "/out", dir + "/err");

  std::optional<int> status = process.waitExit(timeout_ms);
  REQUIRE(status);
  REQUIRE(WIFEXITED(*status));
  CommandResult result;
  result.exit_code = WEXITSTATUS(*status);
  result.out = readFile(dir + "/out");
  result.err = readFile(dir + "/err");
  return result;
}

ProxyOptions proxyOptions(int workers, Env env) {
  ProxyOptions options;
  options.workers = workers;
  options.env = std::move(env);
  return options;
}

Proxy::Proxy(const RedisServer* redis, ProxyOptions options)
    : port_(freePort()), admin_port_(freePort()), dir_(tempDir()) {
  prefix_ = "it" + std::to_string(getpid()) + "-" + std::to_string(g_prefix_counter++) + ":";
  rules_path_ = dir_ + "/rules.json";
  writeFile(rules_path_, options.rules_json);

  std::map<std::string, std::string> env = {
      {"STRANGLER_LISTEN", "127.0.0.1:" + std::to_string(port_)},
      {"STRANGLER_ADMIN_LISTEN", "127.0.0.1:" + std::to_string(admin_port_)},
      {"STRANGLER_WORKERS", std::to_string(options.workers)},
      {"STRANGLER_REDIS_PREFIX", prefix_},
      {"STRANGLER_RULES", rules_path_},
      {"STRANGLER_DRAIN_TIMEOUT", "5s"},
      {"STRANGLER_LOG_LEVEL", "debug"},
  };
  if (redis && !options.private_redis) env["STRANGLER_REDIS_URL"] = redis->url();
  for (const auto& [name, value] : options.env) env[name] = value;

  std::string binary = options.binary.empty() ? buildDir() + "/strangler" : options.binary;
  process_.start({binary, "serve"}, env, dir_ + "/stdout.log", dir_ + "/stderr.log");
  if (options.wait_ready && !waitReady(10000 * kTimeScale)) {
    throw std::runtime_error("proxy not ready in 10s; its log:\n" + processLog());
  }
}

Proxy::~Proxy() { process_.stop(); }

bool Proxy::ready() const {
  Client client;
  return client.get(adminUrl("/readyz")).status == 200;
}

bool Proxy::waitReady(int timeout_ms) {
  return waitUntil([&] { return ready(); }, timeout_ms, "the proxy to be ready");
}

bool Proxy::waitForReplacement(pid_t gone, size_t workers, int timeout_ms) {
  auto replaced = [&] {
    std::vector<pid_t> now = workerPids();
    return now.size() == workers && std::find(now.begin(), now.end(), gone) == now.end() && ready();
  };
  return waitUntil(replaced, timeout_ms, "worker " + std::to_string(gone) + " to be replaced", 10);
}

std::vector<pid_t> Proxy::workerPids() const {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  while (dirent* entry = readdir(proc)) {
    pid_t pid = atoi(entry->d_name);
    if (pid <= 0) continue;
    std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    int parent = 0;
    char state = 0;
    if (sscanf(stat.c_str() + close + 1, " %c %d", &state, &parent) != 2) continue;
    std::string cmdline = readFile("/proc/" + std::to_string(pid) + "/cmdline");
    if (parent == process_.pid() && cmdline.find("worker") != std::string::npos && state != 'Z') pids.push_back(pid);
  }
  closedir(proc);
  return pids;
}

std::vector<Json::Value> Proxy::accessLog() const {
  std::vector<Json::Value> lines;
  std::istringstream text(stdoutText());
  std::string line;
  while (std::getline(text, line)) lines.push_back(parseJson(line));
  return lines;
}

std::vector<Json::Value> Proxy::awaitAccessLog(size_t count, int timeout_ms) const {
  waitUntil([&] { return accessLog().size() >= count; }, timeout_ms, std::to_string(count) + " access lines");
  return accessLog();
}

std::string Proxy::processLog() const { return readFile(dir_ + "/stderr.log"); }
std::string Proxy::stdoutText() const { return readFile(dir_ + "/stdout.log"); }
bool Proxy::processLogHas(const std::string& text) const { return processLog().find(text) != std::string::npos; }

bool Proxy::waitForProcessLog(const std::string& text, int timeout_ms) const {
  return waitUntil([&] { return processLogHas(text); }, timeout_ms, "the process log to say " + text);
}

std::string Proxy::metrics() const {
  Client client;
  Response response = client.get(adminUrl("/metrics"));
  return response.status == 200 ? response.body : "";
}

bool Proxy::waitForMetric(const std::string& series, double value, int timeout_ms) const {
  auto reached = [&] { return metric(metrics(), series) == value; };
  return waitUntil(reached, timeout_ms, series + " to be " + std::to_string(value));
}

namespace {

std::map<std::string, std::unique_ptr<EchoUpstream>> startEchoUpstreams(
    const std::vector<std::string>& names) {
  std::map<std::string, std::unique_ptr<EchoUpstream>> upstreams;
  for (const std::string& name : names) upstreams[name] = std::make_unique<EchoUpstream>(name);
  return upstreams;
}

ProxyOptions withRules(ProxyOptions options, std::string rules_json) {
  options.rules_json = std::move(rules_json);
  return options;
}

}  // namespace

EchoStack::EchoStack(const std::vector<std::string>& upstream_names, const std::string& rules_template,
                     ProxyOptions options)
    : upstreams(startEchoUpstreams(upstream_names)),
      proxy(&redis, withRules(std::move(options), rules(rules_template))) {}

std::string EchoStack::rules(const std::string& rules_template) const {
  std::vector<const EchoUpstream*> named;
  for (const auto& entry : upstreams) named.push_back(entry.second.get());
  return fillInUrls(rules_template, named);
}

std::optional<std::string> Response::header(const std::string& name) const {
  for (const auto& [key, value] : headers) {
    if (strcasecmp(key.c_str(), name.c_str()) == 0) return value;
  }
  return std::nullopt;
}

Json::Value Response::json() const { return parseJson(body); }

namespace {

size_t collectBody(char* data, size_t size, size_t count, void* target) {
  static_cast<std::string*>(target)->append(data, size * count);
  return size * count;
}

size_t collectHeader(char* data, size_t size, size_t count, void* target) {
  std::string line(data, size * count);
  auto* headers = static_cast<Headers*>(target);
  if (line.rfind("HTTP/", 0) == 0) headers->clear();  // a new response (after a 100)
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string value = line.substr(colon + 1);
    size_t start = value.find_first_not_of(" \t");
    size_t end = value.find_last_not_of(" \t\r\n");
    headers->emplace_back(line.substr(0, colon), start == std::string::npos ? "" : value.substr(start, end - start + 1));
  }
  return size * count;
}

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_ALL); }
  ~CurlGlobal() { curl_global_cleanup(); }
} g_curl_global;

}  // namespace

Client::Client() : curl_(curl_easy_init()) {}
Client::~Client() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

Response Client::request(const std::string& method, const std::string& url, const Headers& headers,
                         const std::optional<std::string>& body, bool http10) {
  return perform(method, url, headers, body, http10 ? CURL_HTTP_VERSION_1_0 : CURL_HTTP_VERSION_1_1);
}

Response Client::requestHttp2(const std::string& method, const std::string& url, const Headers& headers,
                              const std::optional<std::string>& body, bool upgrade) {
  return perform(method, url, headers, body, upgrade ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
}

long Client::httpVersion() const {
  long version = 0;
  curl_easy_getinfo(static_cast<CURL*>(curl_), CURLINFO_HTTP_VERSION, &version);
  return version;
}

Response Client::perform(const std::string& method, const std::string& url, const Headers& headers,
                         const std::optional<std::string>& body, long version) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);
  Response response;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collectBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collectHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response.headers);
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, version);
  if (method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  else curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (body) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  }
  curl_slist* list = nullptr;
  for (const auto& [name, value] : headers) list = curl_slist_append(list, (name + ": " + value).c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);

  CURLcode code = curl_easy_perform(curl);
  if (code != CURLE_OK) response.error = curl_easy_strerror(code);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &response.connects);
  curl_slist_free_all(list);
  return response;
}

int connectTo(int port, int receive_buffer) {
  int fd = openLoopback(port, receive_buffer);
  REQUIRE_MESSAGE(fd >= 0, "connect to 127.0.0.1:" << port << " failed");
  return fd;
}

std::string rawExchange(int port, const std::string& bytes, int quiet_ms, bool shutdown_write) {
  int fd = openLoopback(port, 0);
  if (fd < 0) return "<connect failed>";
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t count = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (count <= 0) break;
    sent += static_cast<size_t>(count);
  }
  if (shutdown_write) shutdown(fd, SHUT_WR);

  std::string received;
  pollfd wait = {fd, POLLIN, 0};
  while (poll(&wait, 1, quiet_ms) > 0) {
    char buffer[65536];
    ssize_t count = recv(fd, buffer, sizeof buffer, 0);
    if (count <= 0) break;
    received.append(buffer, static_cast<size_t>(count));
  }
  close(fd);
  return received;
}

std::vector<RawResponse> parseResponses(const std::string& bytes) {
  std::vector<RawResponse> responses;
  size_t at = 0;
  while (at < bytes.size()) {
    size_t head_end = bytes.find("\r\n\r\n", at);
    if (head_end == std::string::npos) break;
    RawResponse response;
    std::istringstream head(bytes.substr(at, head_end - at));
    std::string line;
    std::getline(head, line);
    response.status = atoi(line.c_str() + 9);
    bool chunked = false;
    long length = -1;
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      std::string value = line.substr(line.find_first_not_of(' ', colon + 1));
      response.headers.emplace_back(name, value);
      if (strcasecmp(name.c_str(), "content-length") == 0) length = atol(value.c_str());
      if (strcasecmp(name.c_str(), "transfer-encoding") == 0 && value == "chunked") chunked = true;
    }
    at = head_end + 4;
    if (response.status == 204 || response.status == 304 || (response.status >= 100 && response.status < 200)) {
      length = 0;
    }
    if (chunked) {
      while (true) {
        size_t line_end = bytes.find("\r\n", at);
        if (line_end == std::string::npos) return responses;
        long size = strtol(bytes.c_str() + at, nullptr, 16);
        at = line_end + 2;
        if (size == 0) {
          size_t trailer_end = bytes.find("\r\n", at);
          while (trailer_end != std::string::npos && trailer_end != at) {
            at = trailer_end + 2;
            trailer_end = bytes.find("\r\n", at);
          }
          at = trailer_end == std::string::npos ? bytes.size() : trailer_end + 2;
          break;
        }
        response.body += bytes.substr(at, static_cast<size_t>(size));
        at += static_cast<size_t>(size) + 2;
      }
    } else if (length >= 0) {
      response.body = bytes.substr(at, static_cast<size_t>(length));
      at += static_cast<size_t>(length);
    } else {
      response.body = bytes.substr(at);
      at = bytes.size();
    }
    responses.push_back(response);
  }
  return responses;
}

Json::Value parseJson(const std::string& text) {
  Json::Value value;
  Json::CharReaderBuilder builder;
  std::string errors;
  std::istringstream input(text);
  if (!Json::parseFromStream(builder, input, &value, &errors)) {
    throw std::runtime_error("not JSON (" + errors + "): " + text.substr(0, 300));
  }
  return value;
}

std::string replaceAll(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::vector<std::string> pairLines(const Json::Value& pairs) {
  std::vector<std::string> lines;
  for (const Json::Value& pair : pairs) lines.push_back(pair[0].asString() + ": " + pair[1].asString());
  return lines;
}

std::vector<std::string> receivedHeaders(const Json::Value& echo) { return pairLines(echo["headers"]); }

bool contains(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) count++;
  return count;
}

std::map<std::string, std::string> memoryTestEnv() {
  if (!kSanitized) return {};
  const char* inherited = getenv("ASAN_OPTIONS");
  std::string options = inherited && *inherited ? std::string(inherited) + ":" : "";
  return {{"ASAN_OPTIONS", options + "quarantine_size_mb=" + std::to_string(kQuarantineMb)}};
}

long peakRssKb(pid_t pid) {
  std::string status = readFile("/proc/" + std::to_string(pid) + "/status");
  size_t at = status.find("VmHWM:");
  return at == std::string::npos ? -1 : atol(status.c_str() + at + 6);
}

double metric(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.compare(0, series.size() + 1, series + " ") == 0)
      return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

}  // namespace harness
