Feature: commctl, the operator's command line client, against the running server

  Scenario: Create, get, list and delete a cluster
    When we run commctl "cluster create honeynut -o json"
    Then commctl exits with 0
    And commctl's JSON field "name" is "honeynut"
    And commctl's JSON field "network" is "default"
    And commctl's JSON field "hosts.total" is 0
    When we run commctl "cluster create honeynut"
    Then commctl exits with 0
    And commctl prints "Cluster honeynut already exists with these settings (unchanged)."
    When we run commctl "-o json cluster get honeynut"
    Then commctl exits with 0
    And commctl's JSON field "name" is "honeynut"
    And commctl's JSON field "status" is "ok"
    When we run commctl "cluster get honeynut"
    Then commctl exits with 0
    And commctl prints "hosts: 0 total, 0 available, 0 unavailable"
    When we run commctl "cluster list -o json"
    Then commctl exits with 0
    And commctl's JSON lists "honeynut"
    When we run commctl "cluster delete honeynut"
    Then commctl exits with 0
    And commctl prints "Deleted cluster honeynut."
    When we run commctl "cluster list -o json"
    Then commctl's JSON is an empty list
    When we run commctl "cluster get honeynut"
    Then commctl exits with 4
    And commctl complains "honeynut"

  Scenario: Create and list networks, and a cluster on one
    When we run commctl "network create labnet -t flannel_server -o '{"address": "127.0.0.1:8080"}' --output json"
    Then commctl exits with 0
    And commctl's JSON field "name" is "labnet"
    And commctl's JSON field "type" is "flannel_server"
    And commctl's JSON field "options.address" is "127.0.0.1:8080"
    When we run commctl "network list -o json"
    Then commctl exits with 0
    And commctl's JSON lists "default, labnet"
    When we run commctl "network get labnet -o json"
    Then commctl's JSON field "type" is "flannel_server"
    When we run commctl "cluster create honeynut -n labnet -o json"
    Then commctl exits with 0
    And commctl's JSON field "network" is "labnet"
    When we run commctl "cluster delete honeynut"
    And we run commctl "network delete labnet"
    Then commctl exits with 0
    When we run commctl "network list -o json"
    Then commctl's JSON lists "default"

  Scenario: A trivial container manager
    When we run commctl "container_manager create triv trivial --output json"
    Then commctl exits with 0
    And commctl's JSON field "name" is "triv"
    And commctl's JSON field "type" is "trivial"
    When we run commctl "container_manager get triv -o json"
    Then commctl exits with 0
    And commctl's JSON field "type" is "trivial"
    When we run commctl "container_manager list -o json"
    Then commctl's JSON lists "triv"
    When we run commctl "cluster create managed -m triv -o json"
    Then commctl exits with 0
    And commctl's JSON field "container_manager" is "triv"
    When we run commctl "cluster delete managed"
    And we run commctl "container_manager delete triv"
    Then commctl exits with 0
    And commctl prints "Deleted container manager triv."
    When we run commctl "container_manager get triv"
    Then commctl exits with 4

  Scenario: Hosts: create, list, get, join, unjoin and delete
    Given commctl has run "cluster create honeynut"
    When we run commctl "host create 127.0.250.1 -s $KEYFILE -o json"
    Then commctl exits with 0
    And commctl's JSON field "address" is "127.0.250.1"
    And commctl's JSON has no field "ssh_priv_key"
    When we run commctl "host create 127.0.250.2 -s $KEYFILE -c honeynut -p 2222"
    Then commctl exits with 0
    And commctl prints "Created host 127.0.250.2."
    When we run commctl "host list -o json"
    Then commctl exits with 0
    And commctl's JSON lists "127.0.250.1, 127.0.250.2"
    When we run commctl "host list"
    Then commctl prints a line matching "ADDRESS +STATUS +CLUSTER.*"
    And commctl prints a line matching "127\.0\.250\.2 +\w+ +honeynut.*"
    When we run commctl "host list honeynut -o json"
    Then commctl's JSON lists "127.0.250.2"
    When we run commctl "host get 127.0.250.1 -o json"
    Then commctl exits with 0
    And commctl's JSON field "address" is "127.0.250.1"
    And commctl's JSON field "ssh_port" is 22
    And commctl's JSON has no field "ssh_priv_key"
    When we run commctl "host join 127.0.250.1 honeynut"
    Then commctl exits with 0
    And commctl prints "Host 127.0.250.1 is in cluster honeynut."
    When we run commctl "host list honeynut -o json"
    Then commctl's JSON lists "127.0.250.1, 127.0.250.2"
    When we run commctl "host get 127.0.250.1 -o json"
    Then commctl's JSON field "cluster" is "honeynut"
    When we run commctl "host get 127.0.250.2 -o json"
    Then commctl's JSON field "ssh_port" is 2222
    When we run commctl "host unjoin 127.0.250.1"
    Then commctl exits with 0
    And commctl prints "Host 127.0.250.1 left cluster honeynut."
    When we run commctl "host list honeynut -o json"
    Then commctl's JSON lists "127.0.250.2"
    When we run commctl "host delete 127.0.250.1 127.0.250.2"
    Then commctl exits with 0
    And commctl prints "Deleted host 127.0.250.1."
    And commctl prints "Deleted host 127.0.250.2."
    When we run commctl "host list -o json"
    Then commctl's JSON is an empty list
    When we run commctl "host get 127.0.250.1"
    Then commctl exits with 4

  Scenario: A host that cannot be reached ends failed
    When we run commctl "host create 127.0.250.3 -s $KEYFILE"
    Then commctl exits with 0
    And within 60 seconds commctl "host get 127.0.250.3 -o json" shows "status" is "failed"
    When we run commctl "host list --status failed -o json"
    Then commctl's JSON lists "127.0.250.3"

  Scenario: A missing record exits 4
    When we run commctl "cluster get nosuchcluster"
    Then commctl exits with 4
    And commctl complains "nosuchcluster"
    And commctl prints nothing on stdout
    When we run commctl "cluster delete nosuchcluster"
    Then commctl exits with 4

  Scenario: A create that conflicts with what is stored exits 5
    Given commctl has run "network create other -t flannel_server -o '{"address": "127.0.0.1:8080"}'"
    And commctl has run "cluster create honeynut"
    When we run commctl "cluster create honeynut -n other"
    Then commctl exits with 5
    And commctl complains "honeynut"
    When we run commctl "cluster get honeynut -o json"
    Then commctl's JSON field "network" is "default"

  Scenario: A wrong password exits 3
    Given commctl is configured with the password "not-the-password"
    When we run commctl "cluster list"
    Then commctl exits with 3
    And commctl prints nothing on stdout

  Scenario: passhash prints a bcrypt hash
    When we run commctl "passhash --password x -r 4"
    Then commctl exits with 0
    And commctl prints a line matching "\$2b\$04\$[./A-Za-z0-9]{53}"

  Scenario: A restart of an empty cluster finishes
    Given commctl has run "cluster create honeynut"
    When we run commctl "cluster restart start honeynut -o json"
    Then commctl exits with 0
    And commctl's JSON field "name" is "honeynut"
    When we run commctl "cluster restart status honeynut --watch --interval 0.5"
    Then commctl exits with 0
    And commctl prints "Restart of cluster honeynut: finished"
    When we run commctl "cluster restart status honeynut -o json"
    Then commctl exits with 0
    And commctl's JSON field "status" is "finished"
    And commctl's JSON field "name" is "honeynut"
