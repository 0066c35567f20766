// Gathers header fields from llhttp's name and value pieces, which may be
// split across several callbacks: the one place both HTTP/1 codecs (request
// and response) build their field lists.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "shared/rules.h"

namespace strangler {

class HeaderCollector {
 public:
  void appendName(const char* at, size_t length) { name_.append(at, length); }

  void appendValue(const char* at, size_t length) {
    in_value_ = true;
    value_.append(at, length);
  }

  bool inValue() const { return in_value_; }

  // Ends the field being gathered and adds it to `target`. llhttp strips the
  // leading whitespace of a value; the trailing one goes here.
  void finish(HeaderList& target) {
    while (!value_.empty() && (value_.back() == ' ' || value_.back() == '\t')) value_.pop_back();
    target.emplace_back(std::move(name_), std::move(value_));
    name_.clear();
    value_.clear();
    in_value_ = false;
  }

 private:
  std::string name_;
  std::string value_;
  bool in_value_ = false;
};

}  // namespace strangler
