"""Lab hosts: N real sshd "machines" on this one Linux machine, for tests,
behave features and benchmarks. Needs root.

    from tools.lab import Lab
    with Lab(reboot_time=2.0) as lab:
        hosts = lab.start_hosts(20)           # 127.0.100.1 and up, port 22
        hosts[0].address, lab.private_key_path, lab.private_key_b64
        hosts[0].reboot()                     # down now, back 2 s later, new boot id

    python -m tools.lab up --count 5          # one JSON line per host, until ^C
    python -m tools.lab build-base            # just build the cached base
    python -m tools.lab up --count 1 --profile debian   # a real Debian 12 host

What a lab host is
------------------
* A Debian bookworm root filesystem (debootstrap minbase + openssh-server,
  python3, iproute2, procps), built once and cached in
  ~/.cache/commissaire-lab/base-<hash> (base-debian-<hash> for the debian
  profile; tools/lab/base.py), shared read-only
  by every host as the lower layer of the host's own overlayfs; what a host
  writes lands in its upper dir under the lab's work dir, never on the machine.
* Its own mount, pid, uts and ipc namespaces and a chroot; the machine's
  network (it listens on its own 127.x.y.z address). See tools/lab/host.py.
* Its own ed25519 host key; root logs in with the lab's one ed25519 key
  (``lab.private_key_path``, 0600 in the work dir).
* The "lab" OS profile: /etc/os-release says Debian, /etc/commissaire-lab
  exists, and stand-ins (tools/lab/standins/labcmd) shadow systemctl, reboot,
  shutdown, dnf, yum, apt-get, rpm-ostree and atomic. Each call is appended to
  /var/lib/lab/requests.jsonl as {"cmd", "argv", "time", "boot_id"} and exits 0
  (``LabHost.requests()`` reads them). ``reboot``, ``shutdown -r`` and
  ``systemctl reboot`` really reboot the host (the Lab's supervisor thread
  sees /var/lib/lab/reboot-requested within 0.1 s). ``rpm-ostree deploy V``,
  ``rpm-ostree upgrade``, ``atomic host upgrade``, ``dnf upgrade``, ``yum
  update`` and ``apt-get dist-upgrade`` set /var/lib/lab/pending_version (V,
  or the current version + ".1"), which becomes /var/lib/lab/version (first
  "1.0") at the next boot; ``rpm-ostree status --json`` reports it. The
  stand-in systemctl says every unit is loaded, enabled and active
  (``is-active``, ``is-enabled``, ``show``).
* Or the "debian" OS profile (``lab.start_hosts(n, profile="debian")``,
  ``python -m tools.lab up --count N --profile debian``): a plain Debian 12
  as a fresh cloud image (no /etc/commissaire-lab, so facts say os=debian,
  version 12; empty apt lists) with Debian's own apt-get and dpkg, from the
  same cached debootstrap. Only systemctl, reboot and shutdown are stand-ins
  (no systemd in a chroot), and /usr/sbin/policy-rc.d (exit 101) keeps
  package scripts from starting daemons. Its systemctl keeps unit state as
  systemd would: units exist when their unit files do (else "Unit X.service
  not found.", exit 5), enable/disable write and remove the [Install]
  symlinks, and the active state and the unit file + drop-ins each unit was
  (re)started with are kept per boot in /var/lib/lab/units.json
  (``LabHost.units()``, ``LabHost.unit_state(unit)`` = ``systemctl show``);
  a reboot makes the enabled units the active ones. Package sources for it
  on loopback: tests/support/aptmirror.py.

Boot ids
--------
Every boot writes a fresh uuid to /var/lib/lab/boot_id and bind-mounts it over
/proc/sys/kernel/random/boot_id inside the host (the kernel's own file is the
machine's), so playbooks and probes read the boot id where they would on any
real host and need to know nothing about the lab.

Stopped hosts
-------------
A host's overlay is mounted by a *holder* process that lives as long as the
Lab; ``stop()`` kills only the boot (sshd and everything started over SSH).
So ``read_file``, ``file_exists``, ``requests`` and ``boot_id`` (the last
boot's) work on a stopped host, and ``run`` works there in a bare chroot.

Cleanup
-------
``close()`` (also at exit, and on ``with``) kills every process, which ends
the private mount namespaces and so the mounts, releases the addresses and
removes the work dir. If the Python process is killed instead, the kernel
kills the lab's processes (parent-death signal, tools/lab/spawn.py); the next
Lab removes the stale temp work dir. No address is added to any interface.
"""
from tools.lab.addresses import AddressInUse
from tools.lab.host import LabError, LabHost
from tools.lab.lab import Lab

__all__ = ["AddressInUse", "Lab", "LabError", "LabHost"]
