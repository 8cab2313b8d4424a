#include "kagzi/core/wakeup.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <stdexcept>

#include <fmt/format.h>

#include "kagzi/core/validation.h"

namespace kagzi {

std::string WakeupPayload(std::string_view workflow, const std::vector<std::string>& run_ids) {
  std::string out(workflow);
  if (run_ids.size() > kMaxAnnouncedRuns) return out;
  for (const std::string& id : run_ids) {
    out += '\t';
    out += id;
  }
  return out;
}

std::optional<std::vector<std::string>> AnnouncedRuns(std::string_view payload) {
  auto tab = payload.find('\t');
  if (tab == std::string_view::npos) return std::nullopt;
  std::vector<std::string> ids;
  std::string_view rest = payload.substr(tab + 1);
  while (true) {
    auto next = rest.find('\t');
    std::string_view id = rest.substr(0, next);
    if (!IsUuid(id) || ids.size() == kMaxAnnouncedRuns) return std::nullopt;
    ids.emplace_back(id);
    if (next == std::string_view::npos) break;
    rest.remove_prefix(next + 1);
  }
  return ids;
}

std::string NewRunId() {
  std::array<unsigned char, 16> b{};
  std::size_t got = 0;
  while (got < b.size()) {
    ssize_t n = getrandom(b.data() + got, b.size() - got, 0);
    if (n < 0 && errno == EINTR) continue;
    // getrandom(2) fails only without kernel support (Linux < 3.17) or
    // with bad arguments; neither can happen on a supported system.
    if (n < 0) throw std::runtime_error(fmt::format("getrandom: errno {}", errno));
    got += static_cast<std::size_t>(n);
  }
  const auto ms =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x70);  // version 7
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);  // variant 10
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    fmt::format_to(std::back_inserter(out), "{:02x}", b[i]);
  }
  return out;
}

}  // namespace kagzi
