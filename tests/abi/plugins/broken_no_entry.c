/*
 * broken_no_entry.so -- a plain shared library, not a Kagzi plugin: it is
 * built without the SDK's version script and exports a function, but no
 * kagzi_plugin_entry. Expected refusal: "no kagzi_plugin_entry symbol".
 */
int abi_not_a_plugin(int x);

int abi_not_a_plugin(int x) { return x + 1; }
