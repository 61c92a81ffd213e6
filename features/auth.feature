Feature: Only authenticated clients use the API

  Scenario Outline: Anonymous requests are refused with a JSON error
    Given we are anonymous
    When we GET "<path>"
    Then the status code is 401
    And the error says "authentication is required"

    Examples:
      | path                      |
      | /clusters                 |
      | /hosts                    |
      | /networks                 |
      | /containermanagers        |
      | /status                   |
      | /host/127.0.250.1/creds   |

  Scenario: Anonymous writes change nothing
    Given we are anonymous
    When we PUT "/cluster/intruder" with
      """
      {}
      """
    Then the status code is 401
    Given we use the password "a"
    When we GET "/clusters"
    Then the status code is 401

  Scenario: A known user with the right password gets in
    When we GET "/clusters"
    Then the status code is 200
    And the response is an empty list
