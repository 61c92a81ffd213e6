"""Tests of the container manager service against the Kubernetes stand-in."""
