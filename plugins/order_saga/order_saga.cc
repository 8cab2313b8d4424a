// plugins/order_saga/order_saga.cc -- an order-fulfilment saga in C++ using the
// ABI 1.1 features of kagzi.hpp: retry policies, an event with a timeout,
// compensation, a child workflow, parallel steps, a deterministic clock and
// cancellation with cleanup. Needs kagzid with ABI 1.1.
//
// Workflow "order_saga", version 1. Input (all but "order_id" optional):
//   {"order_id": "o-1001",            the order; part of every idempotency key
//    "sku": "sku-42", "quantity": 1,  what to reserve
//    "amount_cents": 1999,            what to charge
//    "email": "ada@example.com",      where the receipt goes
//    "charge_failures": 0,            simulate the card processor failing
//                                     retryably this many times first (at most
//                                     4 are absorbed by the charge's retry
//                                     policy; more fail the charge)
//    "shipment_timeout_ms": 86400000} how long to wait for the warehouse
// Flow:
//   1. now("ordered-at")                  order timestamp, journaled
//   2. step "reserve-inventory"           retry policy: 5 attempts from 500 ms
//   3. step "charge-card"                 retry policy: 5 attempts from 1 s, x2,
//                                         max 30 s; on failure: release, fail
//   4. wait_for_event "await-shipment"    event "shipment-confirmed", with the
//                                         timeout; on timeout: compensate
//                                         ("refund-card", "release-inventory")
//                                         and fail
//   5. call_child "send-receipt"          workflow "send_receipt" (below); a
//                                         failed receipt is logged, not fatal
//   6. parallel "notify-customer", "notify-warehouse", "update-analytics"
//                                         best effort: failures are logged
// Cancelling the run (kagzictl cancel) while it runs, after step 2, runs the
// compensation steps for what was done ("cancel-refund-card",
// "cancel-release-inventory"), then the run ends CANCELLED.
// Output: {"order_id", "ordered_at_ms", "reservation_id", "charge_id",
//          "tracking", "receipt_id" (null if the receipt failed),
//          "notified": how many of the 3 notifications went out}.
//
// Try it (kagzid running with this plugin loaded):
//   kagzictl start order_saga --input '{"order_id":"o-1","charge_failures":2}'
//   kagzictl signal <run> shipment-confirmed --data '{"tracking":"1Z999"}'
//   kagzictl wait <run>
//
// Workflow "send_receipt", version 1, the child: {"order_id", "email",
// "amount_cents"} -> steps "render-receipt", "email-receipt"; output
// {"receipt_id": "..."}.
//
// Every side effect is simulated with a log line naming its step and the
// idempotency key a real call would carry (run id + step). The simulated card
// processor keeps per-run attempt counts in a mutex-guarded map: the only
// state shared between runs, and only to make the failures reproducible.
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <kagzi/kagzi.hpp>

namespace {

struct Order {
  std::string id;
  std::string sku;
  std::int64_t quantity = 1;
  std::int64_t amount_cents = 0;
  std::string email;
  std::int64_t charge_failures = 0;
  std::chrono::milliseconds shipment_timeout{0};
};

Order ParseOrder(const kagzi::Json& input) {
  Order order;
  order.id = input.value("order_id", "");
  if (order.id.empty()) {
    throw kagzi::PermanentError(R"(input needs "order_id", e.g. {"order_id": "o-1001"})");
  }
  order.sku = input.value("sku", "sku-42");
  order.quantity = input.value<std::int64_t>("quantity", 1);
  order.amount_cents = input.value<std::int64_t>("amount_cents", 1999);
  order.email = input.value("email", "customer@example.com");
  order.charge_failures = input.value<std::int64_t>("charge_failures", 0);
  order.shipment_timeout =
      std::chrono::milliseconds(input.value<std::int64_t>("shipment_timeout_ms", 86'400'000));
  if (order.quantity < 1 || order.amount_cents < 0) {
    throw kagzi::PermanentError("quantity must be >= 1 and amount_cents >= 0");
  }
  return order;
}

// A stand-in for a card processor that is down for the first `failures`
// attempts of each order. Thread-safe: runs of many orders charge at once.
class SimulatedProcessor {
 public:
  // Returns the charge id, or throws RetryableError while "down".
  std::string charge(std::string_view run_id, std::int64_t failures) {
    std::lock_guard<std::mutex> lock(mutex_);
    int& attempts = attempts_[std::string(run_id)];
    ++attempts;
    if (attempts <= failures) {
      throw kagzi::RetryableError("card processor unavailable (attempt " +
                                  std::to_string(attempts) + ")");
    }
    attempts_.erase(std::string(run_id));
    return "ch-" + std::string(run_id).substr(0, 8);
  }

 private:
  std::mutex mutex_;
  std::map<std::string, int> attempts_;
};

SimulatedProcessor& Processor() {
  static SimulatedProcessor processor;
  return processor;
}

// What has been done so far, and how to undo it. Each compensation is a step,
// so it is recorded and never repeated by a replay. The failure paths use the
// ids "refund-card" / "release-inventory", the cancellation path
// "cancel-refund-card" / "cancel-release-inventory": a cancellation can land
// in the middle of a failure path's compensation (at its next context call),
// and the flags keep one invocation from undoing anything twice. The refund's
// idempotency key does not depend on the step id, so even a refund that ran
// on both paths would reach the processor as the same request.
class Saga {
 public:
  Saga(kagzi::Context& ctx, const Order& order) : ctx_(ctx), order_(order) {}

  void reserved(std::string id) { reservation_ = std::move(id); }
  void charged(std::string id) { charge_ = std::move(id); }

  void compensate(std::string_view why, std::string_view id_prefix = "") {
    if (!charge_.empty() && !refunded_) {
      ctx_.step(std::string(id_prefix) + "refund-card", [&] {
        ctx_.info("refund-card: refunded ", charge_, " (", order_.amount_cents, " cents) because ",
                  why, ", idempotency key ", ctx_.run_id(), "/refund");
      });
      refunded_ = true;
    }
    if (!reservation_.empty() && !released_) {
      ctx_.step(std::string(id_prefix) + "release-inventory", [&] {
        ctx_.info("release-inventory: released ", reservation_, " because ", why,
                  ", idempotency key ", ctx_.run_id(), "/release");
      });
      released_ = true;
    }
  }

 private:
  kagzi::Context& ctx_;
  const Order& order_;
  std::string reservation_;
  std::string charge_;
  bool refunded_ = false;
  bool released_ = false;
};

std::int64_t UnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

KAGZI_WORKFLOW(order_saga, 1, ctx, input) {
  const Order order = ParseOrder(input);
  // Not system_clock::now(): the body is replayed, the journaled value is stable.
  const std::int64_t ordered_at_ms = UnixMs(ctx.now("ordered-at"));

  const std::string reservation_id = ctx.step(
      "reserve-inventory",
      [&] {
        ctx.info("reserve-inventory: ", order.quantity, " x ", order.sku, " for order ", order.id);
        return "res-" + order.id;
      },
      kagzi::RetryPolicy{.max_attempts = 5, .initial_interval = std::chrono::milliseconds(500)});

  Saga saga(ctx, order);
  saga.reserved(reservation_id);
  try {
    std::string charge_id;
    try {
      charge_id = ctx.step(
          "charge-card",
          [&] {
            std::string id = Processor().charge(ctx.run_id(), order.charge_failures);
            ctx.info("charge-card: charged ", order.amount_cents, " cents as ", id,
                     ", idempotency key ", ctx.run_id(), "/charge-card");
            return id;
          },
          kagzi::RetryPolicy{.max_attempts = 5,
                             .initial_interval = std::chrono::seconds(1),
                             .max_interval = std::chrono::seconds(30),
                             .multiplier = 2.0,
                             .jitter = 0.2});
    } catch (const kagzi::StepError& e) {
      // Retries exhausted, or a permanent refusal: nothing was charged.
      ctx.warn("order ", order.id, ": charge failed (", e.message(), "); releasing stock");
      saga.compensate("the charge failed");
      throw kagzi::PermanentError("order " + order.id + ": payment failed: " + e.message());
    }
    saga.charged(charge_id);

    // Parks the run (no thread held) until the warehouse confirms or time is up.
    const std::optional<kagzi::Json> shipment =
        ctx.wait_for_event("await-shipment", "shipment-confirmed", order.shipment_timeout);
    if (!shipment) {
      ctx.warn("order ", order.id, ": no shipment confirmation in ", order.shipment_timeout.count(),
               " ms; compensating");
      saga.compensate("the shipment was not confirmed in time");
      throw kagzi::PermanentError("order " + order.id + ": shipment not confirmed within " +
                                  std::to_string(order.shipment_timeout.count()) + " ms");
    }
    const std::string tracking = shipment->value("tracking", "unknown");

    // A child run, started once; this run is parked until it finishes.
    kagzi::Json receipt_id;
    try {
      const kagzi::Json receipt = ctx.call_child("send-receipt", "send_receipt",
                                                 kagzi::Json{{"order_id", order.id},
                                                             {"email", order.email},
                                                             {"amount_cents", order.amount_cents}});
      receipt_id = receipt["receipt_id"];
    } catch (const kagzi::StepError& e) {
      ctx.warn("order ", order.id, ": receipt not sent (",
               e.cancelled() ? "child cancelled" : "child failed", "): ", e.message());
    }

    // Best-effort notifications, side by side on host worker threads; each
    // lambda reads only what it captured.
    const std::string_view run_id = ctx.run_id();
    auto [customer, warehouse, analytics] = ctx.parallel_outcomes(
        kagzi::Par("notify-customer",
                   [&ctx, &order, tracking] {
                     ctx.info("notify-customer: order ", order.id, " shipped, tracking ", tracking,
                              " -> ", order.email);
                   }),
        kagzi::Par("notify-warehouse",
                   [&ctx, &order] { ctx.info("notify-warehouse: order ", order.id, " closed"); }),
        kagzi::Par(
            "update-analytics",
            [&ctx, &order, run_id] {
              ctx.info("update-analytics: revenue +", order.amount_cents, " cents, key ", run_id);
            },
            kagzi::RetryPolicy{.max_attempts = 2}));
    int notified = 0;
    for (const kagzi::Outcome<void>* outcome : {&customer, &warehouse, &analytics}) {
      if (const kagzi::StepError* failure = outcome->error()) {
        ctx.warn("order ", order.id, ": ", failure->what());  // logged, not fatal
      } else {
        ++notified;
      }
    }

    return kagzi::Json{{"order_id", order.id},
                       {"ordered_at_ms", ordered_at_ms},
                       {"reservation_id", reservation_id},
                       {"charge_id", charge_id},
                       {"tracking", tracking},
                       {"receipt_id", receipt_id},
                       {"notified", notified}};
  } catch (const kagzi::Cancelled& e) {
    // kagzictl cancel: undo what was done, then let the run end CANCELLED.
    ctx.warn("order ", order.id, " cancelled (", e.reason(), "); compensating");
    saga.compensate("the order was cancelled", "cancel-");
    throw;
  }
}

KAGZI_WORKFLOW(send_receipt, 1, ctx, input) {
  const std::string order_id = input.value("order_id", "");
  const std::string email = input.value("email", "");
  if (order_id.empty() || email.empty()) {
    throw kagzi::PermanentError(R"(send_receipt needs "order_id" and "email")");
  }
  const auto amount_cents = input.value<std::int64_t>("amount_cents", 0);
  const std::string receipt_id = ctx.step("render-receipt", [&] {
    ctx.info("render-receipt: order ", order_id, ", ", amount_cents, " cents");
    return "rcpt-" + order_id;
  });
  ctx.step("email-receipt", [&] {
    ctx.info("email-receipt: ", receipt_id, " -> ", email, ", idempotency key ", ctx.run_id());
  });
  return kagzi::Json{{"receipt_id", receipt_id}};
}

KAGZI_PLUGIN("order_saga", "1.0.0");
