Feature: Hosts

  Scenario: Create, get, list and delete a host
    When we PUT "/host/127.0.250.1" with
      """
      {"ssh_priv_key": "$KEY", "remote_user": "root"}
      """
    Then the status code is 201
    And the response field "address" is "127.0.250.1"
    And the response has no field "ssh_priv_key"
    When we GET "/host/127.0.250.1"
    Then the status code is 200
    And the response has no field "ssh_priv_key"
    When we GET "/hosts"
    Then the response lists "127.0.250.1"
    When we DELETE "/host/127.0.250.1"
    Then the status code is 200
    When we GET "/host/127.0.250.1"
    Then the status code is 404
    When we DELETE "/host/127.0.250.1"
    Then the status code is 404

  Scenario: The key is only shown by the creds endpoint
    Given a host "127.0.250.1" exists
    When we GET "/host/127.0.250.1/creds"
    Then the status code is 200
    And the response shows the secret key
    And the response field "remote_user" is "root"

  Scenario: Re-creating a host identically is harmless
    Given a host "127.0.250.1" exists
    When we PUT "/host/127.0.250.1" with
      """
      {"ssh_priv_key": "$KEY"}
      """
    Then the status code is 200

  Scenario: A host created into a cluster is a member
    Given a cluster "honeynut" exists
    When we PUT "/host/127.0.250.1" with
      """
      {"ssh_priv_key": "$KEY", "cluster": "honeynut"}
      """
    Then the status code is 201
    When we GET "/cluster/honeynut/hosts"
    Then the response lists "127.0.250.1"
    When we GET "/hosts?cluster=honeynut"
    Then the response lists "127.0.250.1"

  Scenario: A host cannot be created into a missing cluster
    When we PUT "/host/127.0.250.1" with
      """
      {"ssh_priv_key": "$KEY", "cluster": "ghost"}
      """
    Then the status code is 409
    When we GET "/host/127.0.250.1"
    Then the status code is 404

  Scenario: List hosts filtered by cluster and paged
    Given a cluster "honeynut" exists
    And a host "127.0.250.1" exists in cluster "honeynut"
    And a host "127.0.250.2" exists in cluster "honeynut"
    And a host "127.0.250.3" exists
    When we GET "/hosts?cluster=honeynut"
    Then the response lists "127.0.250.1, 127.0.250.2"
    When we GET "/hosts?limit=2"
    Then the response lists "127.0.250.1, 127.0.250.2"
    When we GET "/hosts?limit=2&offset=2"
    Then the response lists "127.0.250.3"
    When we GET "/hosts?limit=0"
    Then the status code is 400
    And the error names the field "limit"

  Scenario Outline: Bad input names the field and stores nothing
    When we PUT "<path>" with
      """
      <body>
      """
    Then the status code is 400
    And the error names the field "<field>"
    When we GET "/hosts"
    Then the response is an empty list

    Examples:
      | path               | body                                          | field        |
      | /host/127.0.250.1  | {"ssh_priv_key": "not base64!"}               | ssh_priv_key |
      | /host/127.0.250.1  | {"ssh_priv_key": "$KEY", "ssh_port": 70000}   | ssh_port     |
      | /host/300.0.0.1    | {"ssh_priv_key": "$KEY"}                      | address      |
      | /host/127.0.250.1  | {"ssh_priv_key": "$KEY", "remote_user": 5}    | remote_user  |

  Scenario: Malformed JSON is a 400
    When we PUT "/host/127.0.250.1" with the raw body
      """
      {"ssh_priv_key":
      """
    Then the status code is 400
    And the error says "JSON"

  Scenario: A host's status is shown
    Given a host "127.0.250.1" exists
    When we GET "/host/127.0.250.1/status"
    Then the status code is 200
    And the response field "type" is "host_only"
    When we GET "/host/127.0.250.99/status"
    Then the status code is 404
