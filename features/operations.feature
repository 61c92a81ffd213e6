Feature: Cluster operations are accepted, stored and reported

  Scenario Outline: Start a <kind> on an empty cluster
    Given a cluster "honeynut" exists
    When we PUT "/cluster/honeynut/<kind>" with
      """
      <body>
      """
    Then the status code is 201
    And the response field "name" is "honeynut"
    When we GET "/cluster/honeynut/<kind>"
    Then the status code is 200
    And the response field "name" is "honeynut"

    Examples:
      | kind    | body                  |
      | restart | {}                    |
      | upgrade | {}                    |
      | deploy  | {"version": "7.1"}    |

  Scenario: A deploy needs a version
    Given a cluster "honeynut" exists
    When we PUT "/cluster/honeynut/deploy" with
      """
      {}
      """
    Then the status code is 400
    And the error names the field "version"

  Scenario: Bad options are refused
    Given a cluster "honeynut" exists
    When we PUT "/cluster/honeynut/restart" with
      """
      {"max_unavailable": "lots"}
      """
    Then the status code is 400
    And the error names the field "max_unavailable"

  Scenario: Operations on a missing cluster are 404
    When we PUT "/cluster/ghost/restart" with
      """
      {}
      """
    Then the status code is 404
    When we GET "/cluster/ghost/restart"
    Then the status code is 404

  Scenario: The status of the control plane
    When we GET "/status"
    Then the status code is 200
    And the response field "status" is "ok"
    And the response field "store.status" is "ok"
    And the response field "bus.status" is "ok"
    And the response field "services.storage.status" is "ok"
    And the response field "services.investigator.status" is "ok"
