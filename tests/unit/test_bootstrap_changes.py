"""The one-line account of what a bootstrap changed (investigator/changes.py):
what a managed host's run reports is repeated only when it is a plain name."""
from __future__ import annotations

from commissaire_service.investigator.changes import summarize


def test_a_first_bootstrap_lists_what_it_did() -> None:
    assert summarize({"installed": ["cri-o", "kubelet"], "already_present": ["flannel"],
                      "configured": ["/var/lib/kubelet/config.yaml"], "restarted": ["crio"],
                      "nothing_to_change": False}) == (
        "installed cri-o, kubelet; already present flannel; wrote /var/lib/kubelet/config.yaml; "
        "restarted crio")


def test_a_second_bootstrap_says_nothing_changed() -> None:
    assert summarize({"installed": [], "already_present": ["docker", "flannel"], "configured": [],
                      "restarted": []}) == "nothing to change (already present: docker, flannel)"
    assert summarize({"installed": [], "configured": [], "restarted": []}) == "nothing to change"


def test_hostile_values_are_counted_not_repeated() -> None:
    hostile = ["docker\nFAKE host 10.0.0.1 bootstrapped", "{{ lookup('pipe', 'id') }}", "$(id)",
               "a; rm -rf /", 7, None]
    text = summarize({"installed": hostile, "configured": ["/etc/x\n/etc/y", "../../etc/passwd"],
                      "restarted": "docker"})
    assert text == "installed 6 more; wrote 2 more"
    assert "\n" not in text and "lookup" not in text and "$(" not in text


def test_anything_but_a_record_is_no_summary() -> None:
    assert summarize(None) == "" and summarize(["docker"]) == "" and summarize("x") == ""


def test_a_long_list_is_cut() -> None:
    text = summarize({"installed": [f"pkg{i}" for i in range(25)]})
    assert text.endswith("pkg19, 5 more")
