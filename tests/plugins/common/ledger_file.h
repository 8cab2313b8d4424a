// Shared by the fixture plugins that leave a trace outside the database
// (ledger, features, chaos): one line appended to a ledger file.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include <kagzi/kagzi.hpp>

namespace kagzi_fixture {

// Appends `line` with one write() (O_APPEND: atomic between processes for a
// line this short). Failures are retryable step errors naming the file.
inline void AppendLedgerLine(const std::string& path, const std::string& line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw kagzi::RetryableError("open " + path + ": " + std::generic_category().message(errno));
  }
  const ssize_t written = ::write(fd, line.data(), line.size());
  const int write_errno = errno;
  ::close(fd);
  if (written < 0) {
    throw kagzi::RetryableError("write " + path + ": " +
                                std::generic_category().message(write_errno));
  }
  if (static_cast<std::size_t>(written) != line.size()) {
    throw kagzi::RetryableError("write " + path + ": short write");
  }
}

}  // namespace kagzi_fixture
