"""What every reftag process shares and nothing stores: its settings (from the environment) and
its log format. store, api and workers import it; it imports none of them."""
