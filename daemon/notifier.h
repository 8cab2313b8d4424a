// Notifier: tells the service manager about the daemon's life (READY=1,
// STATUS=..., STOPPING=1, WATCHDOG=1). SdNotifier speaks systemd's
// sd_notify protocol and is a no-op when NOTIFY_SOCKET is unset (not under
// systemd). Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace kagzi::daemon {

class Notifier {
 public:
  virtual ~Notifier() = default;
  virtual void Ready() = 0;
  virtual void Status(std::string_view text) = 0;
  virtual void Stopping() = 0;
  virtual void Watchdog() = 0;
};

class SdNotifier final : public Notifier {
 public:
  void Ready() override;
  void Status(std::string_view text) override;
  void Stopping() override;
  void Watchdog() override;
};

}  // namespace kagzi::daemon
