// Path normalisation and query parsing.
#include <doctest/doctest.h>

#include "shared/http_path.h"

using namespace strangler;

namespace {

std::string normalized(const std::string& raw, EncodedSlashes policy = EncodedSlashes::reject) {
  std::string out;
  PathVerdict verdict = normalizePath(raw, policy, out);
  if (verdict == PathVerdict::malformed) return "<malformed>";
  if (verdict == PathVerdict::encoded_slash) return "<encoded-slash>";
  return out;
}

}  // namespace

TEST_CASE("dot segments are removed and slashes merged") {
  CHECK(normalized("/") == "/");
  CHECK(normalized("/a/b") == "/a/b");
  CHECK(normalized("/a/b/") == "/a/b/");
  CHECK(normalized("//a///b") == "/a/b");
  CHECK(normalized("/a/./b") == "/a/b");
  CHECK(normalized("/a/../b") == "/b");
  CHECK(normalized("/../../etc/passwd") == "/etc/passwd");
  CHECK(normalized("/a/b/..") == "/a/");
  CHECK(normalized("/a/.") == "/a/");
  CHECK(normalized("/api/v2/../../legacy") == "/legacy");
  CHECK(normalized("/a..b/.c") == "/a..b/.c");
}

TEST_CASE("as a view, a path that needs no change is the request's own bytes; another is the storage") {
  std::string storage;
  std::string_view path;
  std::string raw = "/api/v2/orders/42";
  CHECK(normalizePath(raw, EncodedSlashes::reject, storage, path) == PathVerdict::ok);
  CHECK(path == "/api/v2/orders/42");
  CHECK(path.data() == raw.data());
  CHECK(storage.empty());

  raw = "/api//v2/./orders/%7E42";
  CHECK(normalizePath(raw, EncodedSlashes::reject, storage, path) == PathVerdict::ok);
  CHECK(path == "/api/v2/orders/~42");
  CHECK(path.data() == storage.data());

  CHECK(normalizePath("/a%2Fb", EncodedSlashes::reject, storage, path) == PathVerdict::encoded_slash);
  CHECK(normalizePath("a/b", EncodedSlashes::reject, storage, path) == PathVerdict::malformed);
  CHECK(normalizePath("", EncodedSlashes::reject, storage, path) == PathVerdict::malformed);
}

TEST_CASE("paths that need no change come back as they are, and only those") {
  for (const char* same : {"/", "/a", "/a/", "/a.b/..c/.d", "/.../x", "/a./.b/", "/x/y:z@!$&'()*+,;=~_-"}) {
    CHECK(normalized(same) == same);
  }
  CHECK(normalized("/.") == "/");
  CHECK(normalized("/..") == "/");
  CHECK(normalized("/./") == "/");
  CHECK(normalized("/a/..") == "/");
  CHECK(normalized("/a//") == "/a/");
  CHECK(normalized("//") == "/");
  CHECK(normalized("/a/%41") == "/a/A");
  CHECK(normalized("/a/b c") == "<malformed>");
}

TEST_CASE("unreserved escapes are decoded, others upper-cased") {
  CHECK(normalized("/%61%62c") == "/abc");
  CHECK(normalized("/%7euser") == "/~user");
  CHECK(normalized("/a%20b") == "/a%20b");
  CHECK(normalized("/a%3fb") == "/a%3Fb");
  CHECK(normalized("/%2e%2e/admin") == "/admin");
  CHECK(normalized("/api/%2E%2E/legacy") == "/legacy");
}

TEST_CASE("encoded slash, backslash and NUL follow the policy") {
  CHECK(normalized("/a%2fb") == "<encoded-slash>");
  CHECK(normalized("/a%5Cb") == "<encoded-slash>");
  CHECK(normalized("/a%00b") == "<encoded-slash>");
  CHECK(normalized("/a%2fb", EncodedSlashes::keep) == "/a%2Fb");
  CHECK(normalized("/a%2f..%2fb", EncodedSlashes::keep) == "/a%2F..%2Fb");
  CHECK(normalized("/a%2f%2fb", EncodedSlashes::decode) == "/a/b");
  CHECK(normalized("/a%2f..%2fb", EncodedSlashes::decode) == "/b");
  CHECK(normalized("/a%00", EncodedSlashes::decode) == "<encoded-slash>");
}

TEST_CASE("malformed paths") {
  CHECK(normalized("") == "<malformed>");
  CHECK(normalized("a/b") == "<malformed>");
  CHECK(normalized("/a%2") == "<malformed>");
  CHECK(normalized("/a%zz") == "<malformed>");
  CHECK(normalized("/a b") == "<malformed>");
  CHECK(normalized("/a\"b") == "<malformed>");
  CHECK(normalized("/a\\b") == "<malformed>");
  CHECK(normalized("/\x80") == "<malformed>");
  CHECK(normalized("/a{b}") == "<malformed>");
}

TEST_CASE("query parameters are decoded") {
  auto pairs = parseQuery("a=1&b=x%20y&c=1+2&flag&=v&&d=%zz");
  REQUIRE(pairs.size() == 6);
  CHECK(pairs[0] == std::pair<std::string, std::string>("a", "1"));
  CHECK(pairs[1] == std::pair<std::string, std::string>("b", "x y"));
  CHECK(pairs[2] == std::pair<std::string, std::string>("c", "1 2"));
  CHECK(pairs[3] == std::pair<std::string, std::string>("flag", ""));
  CHECK(pairs[4] == std::pair<std::string, std::string>("", "v"));
  CHECK(pairs[5] == std::pair<std::string, std::string>("d", "%zz"));
  CHECK(parseQuery("").empty());
}
