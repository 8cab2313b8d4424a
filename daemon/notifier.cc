// sd_notify wrapper.
#include "notifier.h"

#include <string>

#include <systemd/sd-daemon.h>

namespace kagzi::daemon {

void SdNotifier::Ready() { sd_notify(0, "READY=1"); }
void SdNotifier::Status(std::string_view text) {
  std::string msg = "STATUS=" + std::string(text);
  sd_notify(0, msg.c_str());
}
void SdNotifier::Stopping() { sd_notify(0, "STOPPING=1"); }
void SdNotifier::Watchdog() { sd_notify(0, "WATCHDOG=1"); }

}  // namespace kagzi::daemon
