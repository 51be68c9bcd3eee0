-- Texts a contact sent us are found by the contact's number too.
CREATE INDEX messages_inbound ON messages (sender, seq) WHERE status IN ('Receiving', 'Received');
