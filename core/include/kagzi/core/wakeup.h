// Announcing runs to daemons: the ids of new runs, and the payload of a
// NOTIFY on kagzi_wakeup.
//
// Every notification on kagzi_wakeup says that a run of a workflow became
// claimable now; its payload begins with that workflow's name. A client
// that starts runs also names them: "<workflow>\t<run id>\t<run id>...", at
// most kMaxAnnouncedRuns ids (a PostgreSQL payload holds under 8,000
// bytes). A daemon with free slots for all of them claims just those runs,
// by primary key: a cheaper claim than the walk of the claim indexes that
// any other wake-up makes (kagzi-bench idle-latency: p50 0.2-0.4 ms lower,
// docs/benchmarks.md). A payload with no ids, or one a daemon cannot read,
// means only "claim what is due", as it always did. Workflow names cannot
// hold a tab (validation.h refuses control characters). Besides
// WakeupPayload, SQL writes payloads of this form: the wake-up of a parent
// (pg_store_internal.h) and the status trigger (migration 0013).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kagzi {

// Most run ids one payload names; more runs are announced by name only.
inline constexpr std::size_t kMaxAnnouncedRuns = 64;

// The payload announcing `run_ids` of `workflow`: the name alone if there
// are none or more than kMaxAnnouncedRuns.
std::string WakeupPayload(std::string_view workflow, const std::vector<std::string>& run_ids);

// The run ids a payload names; nullopt if it names none (the workflow
// alone, an empty payload) or holds anything but canonical UUIDs after the
// name.
std::optional<std::vector<std::string>> AnnouncedRuns(std::string_view payload);

// A new run id: a UUID version 7 (RFC 9562), 48 bits of Unix time in
// milliseconds, then 74 random bits, so that new runs' keys go to the
// right-hand edge of kagzi_runs' and kagzi_steps' primary keys, as with
// the database's kagzi_new_run_id(). Made by the client, the id is known
// before the start commits, for the payload above. Throws
// std::runtime_error only if the kernel has no getrandom(2) (Linux < 3.17).
std::string NewRunId();

}  // namespace kagzi
