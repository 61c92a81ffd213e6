Feature: Rolling operations over lab hosts, never over budget

  Lab hosts reboot for real (sshd goes away and comes back with a new boot id)
  and record what their reboot, package and rpm-ostree commands were asked.

  Scenario: A restart reboots every host once, at most two at a time
    Given 4 lab hosts
    And a cluster "rolling" exists
    When we register every lab host in cluster "rolling"
    Then every lab host is "disassociated" within 120 seconds
    When we watch how many lab hosts are down
    And we PUT "/cluster/rolling/restart" with
      """
      {"max_unavailable": 2}
      """
    Then the status code is 201
    When we PUT "/cluster/rolling/restart" with
      """
      {}
      """
    Then the status code is 409
    And the restart of cluster "rolling" ends "finished" within 120 seconds
    And every host of the restart of cluster "rolling" is "done"
    And never more than 2 lab hosts were down at once
    And every lab host was rebooted exactly once

  Scenario: An upgrade upgrades, then restarts, each host
    Given 2 lab hosts
    And a cluster "upgraded" exists
    When we register every lab host in cluster "upgraded"
    Then every lab host is "disassociated" within 120 seconds
    When we PUT "/cluster/upgraded/upgrade" with
      """
      {}
      """
    Then the status code is 201
    And the upgrade of cluster "upgraded" ends "finished" within 120 seconds
    And every host of the upgrade of cluster "upgraded" is "done"
    And every lab host was asked "rpm-ostree upgrade" exactly once
    And every lab host was rebooted exactly once

  Scenario: A deploy boots the requested version
    Given 2 lab hosts
    And a cluster "deployed" exists
    When we register every lab host in cluster "deployed"
    Then every lab host is "disassociated" within 120 seconds
    When we PUT "/cluster/deployed/deploy" with
      """
      {"version": "7.1"}
      """
    Then the status code is 201
    And the deploy of cluster "deployed" ends "finished" within 120 seconds
    And every lab host was asked "rpm-ostree deploy 7.1" exactly once
    And every lab host booted version "7.1"
