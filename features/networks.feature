Feature: Networks and container managers

  Scenario: The default network always exists
    When we GET "/network/default"
    Then the status code is 200
    And the response field "type" is "flannel_etcd"

  Scenario: Create, get, list and delete a network
    When we PUT "/network/flat" with
      """
      {"type": "flannel_server", "options": {"address": "127.0.0.1:8080"}}
      """
    Then the status code is 201
    When we GET "/network/flat"
    Then the response field "options.address" is "127.0.0.1:8080"
    When we GET "/networks"
    Then the response lists "default, flat"
    When we DELETE "/network/flat"
    Then the status code is 200
    When we GET "/network/flat"
    Then the status code is 404

  Scenario: A flannel_server network needs an address
    When we PUT "/network/flat" with
      """
      {"type": "flannel_server", "options": {}}
      """
    Then the status code is 400
    And the error names the field "options.address"

  Scenario: A network in use cannot be deleted
    Given a network "flat" exists
    When we PUT "/cluster/honeynut" with
      """
      {"network": "flat"}
      """
    Then the status code is 201
    When we DELETE "/network/flat"
    Then the status code is 409
    When we GET "/network/flat"
    Then the status code is 200

  Scenario: Create, get, list and delete a container manager; its token is never shown
    When we PUT "/containermanager/prod" with
      """
      {"type": "kubernetes", "options": {"server_url": "https://127.0.0.1:6443", "token": "s3cret"}}
      """
    Then the status code is 201
    And the response field "options.token" is "******"
    When we GET "/containermanager/prod"
    Then the response field "type" is "kubernetes"
    And the response field "options.token" is "******"
    When we GET "/containermanagers"
    Then the response lists "prod"
    When we DELETE "/containermanager/prod"
    Then the status code is 200
    When we GET "/containermanager/prod"
    Then the status code is 404

  Scenario: A kubernetes container manager needs its API server URL
    When we PUT "/containermanager/prod" with
      """
      {"type": "kubernetes", "options": {}}
      """
    Then the status code is 400
    And the error names the field "options.server_url"

  Scenario: A cluster uses a container manager that exists
    Given a container manager "prod" of type "trivial" exists
    When we PUT "/cluster/honeynut" with
      """
      {"container_manager": "prod"}
      """
    Then the status code is 201
    When we DELETE "/containermanager/prod"
    Then the status code is 409
