Feature: Clusters and their members

  Scenario: Create, get, list and delete a cluster
    When we PUT "/cluster/honeynut" with
      """
      {"network": "default"}
      """
    Then the status code is 201
    And the response contains
      """
      {"name": "honeynut", "network": "default", "status": "ok",
       "hosts": {"total": 0, "available": 0, "unavailable": 0}}
      """
    When we GET "/cluster/honeynut"
    Then the status code is 200
    And the response field "network" is "default"
    When we GET "/clusters"
    Then the response lists "honeynut"
    When we DELETE "/cluster/honeynut"
    Then the status code is 200
    And the response is an empty list
    When we GET "/cluster/honeynut"
    Then the status code is 404
    And the error says "honeynut"

  Scenario: Re-creating a cluster identically is harmless, differently is a conflict
    Given a network "other" exists
    And a cluster "honeynut" exists
    When we PUT "/cluster/honeynut" with
      """
      {}
      """
    Then the status code is 200
    When we PUT "/cluster/honeynut" with
      """
      {"network": "other"}
      """
    Then the status code is 409
    When we GET "/cluster/honeynut"
    Then the response field "network" is "default"

  Scenario: A cluster on a missing network is refused and not stored
    When we PUT "/cluster/honeynut" with
      """
      {"network": "nowhere"}
      """
    Then the status code is 409
    When we GET "/clusters"
    Then the response is an empty list

  Scenario: Bad names and bodies are clear 400s
    When we PUT "/cluster/bad name!" with
      """
      {}
      """
    Then the status code is 400
    When we PUT "/cluster/honeynut" with
      """
      {"network": 7}
      """
    Then the status code is 400
    And the error names the field "network"

  Scenario: Missing records are 404
    When we GET "/cluster/ghost"
    Then the status code is 404
    When we DELETE "/cluster/ghost"
    Then the status code is 404
    When we GET "/cluster/ghost/hosts"
    Then the status code is 404

  Scenario: Add, test and remove members
    Given a cluster "honeynut" exists
    And a host "127.0.250.1" exists
    And a host "127.0.250.2" exists
    When we PUT "/cluster/honeynut/hosts/127.0.250.1"
    Then the status code is 200
    When we PUT "/cluster/honeynut/hosts/127.0.250.2"
    Then the status code is 200
    When we GET "/cluster/honeynut/hosts"
    Then the response lists "127.0.250.1, 127.0.250.2"
    When we GET "/cluster/honeynut/hosts/127.0.250.1"
    Then the status code is 200
    When we GET "/cluster/honeynut"
    Then the response field "hosts.total" is "2"
    When we DELETE "/cluster/honeynut/hosts/127.0.250.1"
    Then the status code is 200
    When we GET "/cluster/honeynut/hosts/127.0.250.1"
    Then the status code is 404
    When we GET "/cluster/honeynut/hosts"
    Then the response lists "127.0.250.2"

  Scenario: A missing host cannot join a cluster
    Given a cluster "honeynut" exists
    When we PUT "/cluster/honeynut/hosts/127.0.250.9"
    Then the status code is 404
    When we GET "/cluster/honeynut/hosts"
    Then the response is an empty list

  Scenario: Replace members only if the client saw the current list
    Given a cluster "honeynut" exists
    And a host "127.0.250.1" exists in cluster "honeynut"
    And a host "127.0.250.2" exists
    And a host "127.0.250.3" exists
    When we PUT "/cluster/honeynut/hosts" with
      """
      {"old": ["127.0.250.1"], "new": ["127.0.250.2", "127.0.250.3"]}
      """
    Then the status code is 200
    When we GET "/cluster/honeynut/hosts"
    Then the response lists "127.0.250.2, 127.0.250.3"
    When we PUT "/cluster/honeynut/hosts" with
      """
      {"old": ["127.0.250.1"], "new": ["127.0.250.1"]}
      """
    Then the status code is 409
    When we GET "/cluster/honeynut/hosts"
    Then the response lists "127.0.250.2, 127.0.250.3"

  Scenario: Two writers with the same view: one wins, the other gets 409
    Given a cluster "honeynut" exists
    And a host "127.0.250.1" exists
    When two clients PUT "/cluster/honeynut/hosts" at once with
      """
      {"old": [], "new": ["127.0.250.1"]}
      """
    Then the statuses are 200 and 409 in some order
    When we GET "/cluster/honeynut/hosts"
    Then the response lists "127.0.250.1"

  Scenario: A deleted host leaves its cluster
    Given a cluster "honeynut" exists
    And a host "127.0.250.1" exists in cluster "honeynut"
    And a host "127.0.250.2" exists in cluster "honeynut"
    When we DELETE "/host/127.0.250.1"
    Then the status code is 200
    When we GET "/cluster/honeynut/hosts"
    Then the response lists "127.0.250.2"
    When we GET "/cluster/honeynut"
    Then the response field "hosts.total" is "1"
