// Helpers shared by the fuzz targets (tests/fuzz/*.cc): a reader that turns
// the fuzzer's bytes into typed values, and FUZZ_CHECK, which reports a
// broken property and aborts (libFuzzer and the replay test both report an
// abort as a failure). Plain C++20: the targets build with clang and
// libFuzzer (scripts/fuzz.sh) and with g++ for the corpus replay test.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace kagzi::fuzz {

// Consumes the input front to back. Past the end every value is zero or
// empty, so any input is a valid sequence of choices.
class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  std::size_t remaining() const { return size_ - pos_; }

  std::uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  bool Bool() { return (Byte() & 1) != 0; }

  template <typename T>
  T Integral() {
    T v{};
    std::uint8_t bytes[sizeof(T)] = {};
    for (auto& b : bytes) b = Byte();
    std::memcpy(&v, bytes, sizeof(T));
    return v;
  }

  // A value in [0, n) (0 when n is 0).
  std::size_t Below(std::size_t n) { return n == 0 ? 0 : Integral<std::uint16_t>() % n; }

  // A string of 0..max_len bytes: its length in one byte (scaled when
  // max_len > 255), then its bytes.
  std::string String(std::size_t max_len) {
    std::size_t len = Byte();
    if (max_len > 255) len = len * max_len / 255;
    len = std::min(len, std::min(max_len, remaining()));
    std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

  // Everything not consumed yet.
  std::string Rest() {
    std::string s(reinterpret_cast<const char*>(data_ + pos_), remaining());
    pos_ = size_;
    return s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// True if text has a byte a terminal would interpret: C0 controls other
// than those in `allowed`, DEL, or a C1 control (U+0080..U+009F in UTF-8).
inline bool HasControlBytes(std::string_view text, std::string_view allowed = "") {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 || c == 0x7F) && allowed.find(static_cast<char>(c)) == std::string_view::npos) {
      return true;
    }
    if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      return true;
    }
  }
  return false;
}

[[noreturn]] inline void CheckFailed(const char* file, int line, const char* what,
                                     const std::string& detail) {
  std::fprintf(stderr, "%s:%d: fuzz property broken: %s\n%s\n", file, line, what, detail.c_str());
  std::abort();
}

}  // namespace kagzi::fuzz

// FUZZ_CHECK(condition, detail): `detail` (a std::string expression) is
// evaluated only when the condition is false.
#define FUZZ_CHECK(cond, detail)                                                  \
  do {                                                                            \
    if (!(cond)) ::kagzi::fuzz::CheckFailed(__FILE__, __LINE__, #cond, (detail)); \
  } while (false)
