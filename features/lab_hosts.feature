Feature: Hosts made real over SSH, on lab hosts

  Lab hosts (tools/lab) are real sshd hosts on loopback addresses, each with its
  own filesystem. The control plane investigates, bootstraps and watches them.

  Scenario: A registered host is investigated and bootstrapped
    Given 1 lab host
    And a cluster "plain" exists
    When we register lab host 1 in cluster "plain"
    Then lab host 1 is "disassociated" within 120 seconds
    And the response shows the facts of lab host 1
    And the response field "bootstrapped" is "True"
    And lab host 1 has the file "/etc/sysconfig/flanneld" containing "FLANNELD_ETCD_PREFIX"
    And lab host 1 has the file "/etc/systemd/system/docker.service.d/10-commissaire-flannel.conf" containing "--bip=${FLANNEL_SUBNET}"
    And lab host 1 was asked to run "apt-get install -y docker.io"
    And cluster "plain" lists lab host 1

  Scenario: A host that refuses our key fails with the reason
    Given 1 lab host
    When we register lab host 1 with a key it does not accept
    Then lab host 1 is "failed" within 60 seconds
    And the response field "status_reason" contains "authentication"

  Scenario: The watcher follows a host going down and coming back
    Given 1 lab host
    When we register lab host 1
    Then lab host 1 is "disassociated" within 120 seconds
    When lab host 1 stops
    Then lab host 1 is "failed" within 8 seconds
    And the response field "status_reason" contains "cannot reach"
    When lab host 1 starts again
    Then lab host 1 is "disassociated" within 10 seconds
    And the response field "status_reason" is empty

  Scenario: A host whose SSH host key changed is refused
    Given 1 lab host
    When we register lab host 1
    Then lab host 1 is "disassociated" within 120 seconds
    When lab host 1 gets a new SSH host key
    Then lab host 1 is "failed" within 10 seconds
    And the response field "status_reason" contains "host key"

  Scenario: A host registers itself from inside
    Given 1 lab host
    And a cluster "selfreg" exists
    When lab host 1 registers itself in cluster "selfreg"
    Then lab host 1 is "disassociated" within 120 seconds
    And cluster "selfreg" lists lab host 1
    When we GET the status of lab host 1
    Then the status code is 200
    And the response field "host.status" is "disassociated"

  Scenario: A deleted host is forgotten by the watcher
    Given 1 lab host
    When we register lab host 1
    Then lab host 1 is "disassociated" within 120 seconds
    And the watcher knows 1 hosts within 10 seconds
    When we DELETE the record of lab host 1
    Then the status code is 200
    And the watcher knows 0 hosts within 10 seconds
    When we GET the status of lab host 1
    Then the status code is 404

  Scenario: A host of a Kubernetes cluster becomes an active node
    Given 1 lab host
    And a Kubernetes API stand-in as container manager "kube"
    When we PUT "/cluster/kubed" with
      """
      {"container_manager": "kube"}
      """
    Then the status code is 201
    When we register lab host 1 in cluster "kubed"
    Then lab host 1 is "active" within 120 seconds
    And the Kubernetes stand-in has a node for lab host 1
    And lab host 1 has the file "/var/lib/kubelet/kubeconfig" containing "127.0.0.1"
    When we GET the status of lab host 1
    Then the response field "type" is "host_and_container_manager"
    And the response field "host.status" is "active"
