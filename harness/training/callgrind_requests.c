/*
 * Callgrind client requests for cifar-bench's instruction counting (harness/training/callgrind.py).
 *
 * Compiled at first use into a small shared library and called through ctypes. Each request
 * is a marker instruction sequence that valgrind recognises; run natively it does nothing
 * and costs a few instructions, so calling these outside valgrind is harmless.
 *
 * Counting a region: cb_count_start() switches instrumentation on and zeroes the counters;
 * cb_count_stop(label) writes one callgrind dump whose trigger line names the label, then
 * switches instrumentation off again. cb_count_abandon() switches it off without a dump
 * (the region raised, so its count means nothing).
 */
#include <valgrind/callgrind.h>

/* Bumped whenever a function below changes, so that a stale cached build is never used. */
int cb_interface_version(void) { return 1; }

/* Non-zero when this process runs under valgrind (any tool). */
int cb_running_on_valgrind(void) { return (int)RUNNING_ON_VALGRIND; }

void cb_count_start(void) {
    /* Instrumentation on first: switching it on flushes valgrind's translations, which is
       valgrind's own work and never counted; the zeroing then drops anything counted so far. */
    CALLGRIND_START_INSTRUMENTATION;
    CALLGRIND_ZERO_STATS;
}

void cb_count_stop(const char *label) {
    CALLGRIND_DUMP_STATS_AT(label);
    CALLGRIND_STOP_INSTRUMENTATION;
}

void cb_count_abandon(void) {
    CALLGRIND_STOP_INSTRUMENTATION;
    CALLGRIND_ZERO_STATS;
}
