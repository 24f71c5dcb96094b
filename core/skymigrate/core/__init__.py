"""Pure logic and shared plumbing used by both the operator and the node agent."""
