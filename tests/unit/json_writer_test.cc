// JSON text for log lines: escaping of hostile values.
#include <doctest/doctest.h>

#include "shared/json_writer.h"

using namespace strangler;

TEST_CASE("values are escaped so a line can never be broken") {
  JsonObjectWriter json;
  json.field("quote", "a\"b").field("newline", "x\ny\r").field("control", std::string_view("\x01\x7f", 2));
  CHECK(json.finish() == R"({"quote":"a\"b","newline":"x\ny\r","control":"\u0001\u007f"})");
}

TEST_CASE("invalid UTF-8 becomes U+FFFD, valid UTF-8 is kept") {
  std::string out;
  appendJsonEscaped(out, "caf\xc3\xa9 \xff \xe2\x82 \xed\xa0\x80 \xf0\x9f\x98\x80");
  CHECK(out == "caf\xc3\xa9 \\ufffd \\ufffd\\ufffd \\ufffd\\ufffd\\ufffd \xf0\x9f\x98\x80");
}

TEST_CASE("numbers and booleans") {
  JsonObjectWriter json;
  json.field("n", 42).field("big", static_cast<uint64_t>(18446744073709551615ull)).field("ms", 1.5).field("ok", true);
  CHECK(json.finish() == R"({"n":42,"big":18446744073709551615,"ms":1.500,"ok":true})");
}
