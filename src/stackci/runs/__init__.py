"""Job runs: trigger, wait with progress (cancel on timeout or interrupt), classify how a
run ended, and report it (step summary, JUnit per task, annotations)."""
