"""Results as short text, the same on the terminal, in Prefect's artifacts and in logs."""

from __future__ import annotations


def proportion_text(p: dict | None) -> str:
    """k/n (percent, 95% CI low-high), or n/a without a denominator."""
    if not p or not p.get("n"):
        return "n/a"
    low, high = p["ci95"]
    return f"{p['k']}/{p['n']} ({p['pct']:.1f}%, 95% CI {100 * low:.1f}-{100 * high:.1f})"


def p_text(value: float | None) -> str:
    """A p-value to four places, small ones as < 0.0001."""
    if value is None:
        return "n/a"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def check_counts(kinds: dict[str, int]) -> str:
    """How a night's checks came out, by kind, in the same words everywhere."""
    order = ("passed", "warned", "failed", "not applicable")
    return ", ".join(f"{kinds.get(k, 0)} {k}" for k in order)


def age_text(hours: float) -> str:
    """An age as people say it: hours up to two days, then days."""
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
