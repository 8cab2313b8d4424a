/*
 * abi_good.so -- the well-behaved neighbour of the broken corpus.
 *
 * Workflow "abi_good", version 1: one step, "echo", whose result (and the
 * run's output) is {"echo": <the run's input>}. It proves the daemon keeps
 * serving good plugins next to refused ones. It also sorts first in the
 * plugin directory, so broken_already_loaded.so (which declares the same
 * workflow and version) is refused as a duplicate of it.
 */
#include <string.h>

#include "abi_plugin.h"

typedef struct echo_args {
  const char *input;
  size_t input_len;
} echo_args;

static kagzi_status echo_step(void *user, const kagzi_writer *result) {
  static const char prefix[] = "{\"echo\":";
  const echo_args *args = (const echo_args *)user;
  kagzi_status status = result->write(result, prefix, sizeof prefix - 1);
  if (status == KAGZI_OK) status = result->write(result, args->input, args->input_len);
  if (status == KAGZI_OK) status = result->write(result, "}", 1);
  return status;
}

static kagzi_status good_run(const kagzi_host *host, kagzi_context *ctx, void *user_data) {
  echo_args args = {NULL, 0};
  const char *out = NULL;
  size_t out_len = 0;
  kagzi_status status;
  (void)user_data;

  status = host->get_input(ctx, &args.input, &args.input_len);
  if (status != KAGZI_OK) return status;
  status = host->step(ctx, "echo", echo_step, &args, &out, &out_len);
  if (status == KAGZI_OK) return host->set_output(ctx, out, out_len);
  if (status == KAGZI_ERR_RETRYABLE || status == KAGZI_ERR_PERMANENT) {
    host->set_error(ctx, out, out_len);
  }
  return status;
}

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_good", 1, good_run)};
static const kagzi_plugin plugin = ABI_PLUGIN("abi_good", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_minor;
  return host_abi_major == KAGZI_ABI_MAJOR ? &plugin : NULL;
}
