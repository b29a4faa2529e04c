"""The local stack: real Kafka (KRaft, from Maven Central jars), Redis and Prometheus.

``fraud up`` installs what is missing, starts each service as a child process with its pid and
log file under ``var/``, waits until it answers a health check and creates the topics;
``fraud down`` stops them by pid. Knows nothing of fraud: only processes, ports and topics.
The entry points are ``services.stack.stack.Stack`` and ``services.stack.errors.StackError``.
"""
