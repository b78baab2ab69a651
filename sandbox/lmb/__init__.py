"""A stand-in for Banner's Luminis Message Broker: IMS messages and a client that POSTs them."""
