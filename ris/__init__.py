"""RIS broker: HL7 orders in, DICOM Modality Worklist and MPPS out, Instance Availability Notifications."""
