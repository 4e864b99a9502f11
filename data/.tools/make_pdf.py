#!/usr/bin/env python3
"""Regenerate data/backup-retention-policy.pdf, the sample PDF of the knowledge base.

Not used by the tests or by `make demo`; the generated PDF is committed.
Needs fpdf2 (core fonts only, so the text stays plain latin-1):

    python3 -m venv /tmp/pdfenv && /tmp/pdfenv/bin/pip install fpdf2 pypdf
    /tmp/pdfenv/bin/python data/.tools/make_pdf.py

Each entry of PAGES is one printed page; the script fails if a page overflows,
so page numbers quoted in data/README.md stay correct.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF

OUT = Path(__file__).resolve().parent.parent / "backup-retention-policy.pdf"
TITLE = "Backup and Data Retention Policy"

PAGES = [
    [
        ("title", TITLE),
        ("sub", "Northwind Robotics - Policy POL-007, version 2.3 - effective 1 April 2024"),
        ("sub", "Owner: Priya Raman, Head of Security. Approved by: Dana Whitfield, CEO."),
        ("h1", "1. Purpose"),
        ("p", "This policy defines how long Northwind Robotics keeps each kind of data, how "
              "production data is backed up, and how data is preserved when a legal hold is in "
              "place. Keeping data longer than we need it increases our exposure in a breach "
              "and costs money; deleting it too early can break contracts and the law. The "
              "rules below balance both risks."),
        ("h1", "2. Scope"),
        ("p", "The policy applies to all data created, received or stored by Northwind Robotics, "
              "in any system and in any format. This includes the Fleet Controller cloud "
              "service and its databases, data collected by robots at customer sites, email and "
              "chat, the code host, the HR and finance systems, and paper records kept at the "
              "Portland and Austin offices."),
        ("p", "It applies to employees, contractors and vendors who process data on our behalf. "
              "Vendor contracts must require the vendor to follow retention periods at least "
              "as strict as the ones in this policy."),
        ("h1", "3. Roles and responsibilities"),
        ("li", "Data owners (usually the head of the team that runs a system) decide the data "
               "class of their data and make sure their systems apply the retention periods."),
        ("li", "The Site Reliability Engineering team, led by Jonah Pike, runs the backup "
               "platform, monitors backup jobs and performs the restore tests."),
        ("li", "The Security team approves changes to backup settings and handles exceptions."),
        ("li", "Legal, led by Sofia Marquez, General Counsel, issues and releases legal holds."),
        ("li", "Finance confirms the retention periods for financial and tax records each year."),
    ],
    [
        ("h1", "4. Data classification"),
        ("p", "Every data set is assigned one of four classes. The class decides who may access "
              "the data and how it must be protected; the retention period depends on the kind "
              "of record, listed in section 5."),
        ("li", "Public: information intended for publication, such as marketing pages and "
               "published release notes."),
        ("li", "Internal: ordinary business information, such as this policy, meeting notes "
               "and most internal documentation."),
        ("li", "Confidential: customer data, fleet telemetry, source code, contracts and "
               "financial reports."),
        ("li", "Restricted: credentials and encryption keys, employee health and payroll data, "
               "and security investigation records."),
        ("h1", "5. Retention periods"),
        ("p", "Data must be kept for the period below and then deleted or anonymised within "
              "30 days after the period ends. Where a contract with a customer sets a shorter "
              "period, the contract wins for that customer's data."),
        ("li", "Customer fleet telemetry (robot position, battery and error events): 13 months "
               "after collection, then aggregated and anonymised."),
        ("li", "Camera clips recorded by robots at customer sites: 30 days, unless a clip is "
               "attached to a safety investigation."),
        ("li", "Customer order data processed by the Fleet Controller: the length of the "
               "contract plus 60 days."),
        ("li", "Application and system logs: 180 days."),
        ("li", "Security audit logs (sign-ins, vault access, administrator actions): 2 years."),
        ("li", "Support tickets and customer emails: 3 years after the ticket is closed."),
        ("li", "Financial and tax records: 7 years after the end of the fiscal year."),
        ("li", "Employee records: 6 years after employment ends."),
        ("li", "Job applicant data: 12 months after the hiring decision, unless the candidate "
               "agrees to a longer period."),
        ("li", "Source code and design documents: for the life of the product."),
    ],
    [
        ("h1", "6. Backups"),
        ("h2", "6.1 What is backed up"),
        ("p", "All production databases of the Fleet Controller, the Vaultkeeper key vault, the "
              "object storage that holds customer site maps and configuration, and the code host "
              "are backed up by the SRE backup platform. Software-as-a-service systems such as "
              "the HR and finance tools are exported weekly into the same platform."),
        ("h2", "6.2 Schedule"),
        ("p", "Incremental backups run every day at 01:00 UTC and full backups run every Sunday "
              "at 03:00 UTC. Transaction logs of the Fleet Controller databases are shipped "
              "every 15 minutes, so at most 15 minutes of fleet data can be lost. For all other "
              "systems the recovery point objective is 24 hours, and the recovery time "
              "objective is 8 hours."),
        ("h2", "6.3 How long backups are kept"),
        ("p", "Backups are kept for 35 days and then expire automatically. The period is set in "
              "the backup orchestrator by the configuration key backup.retention_days, whose "
              "value is 35. Changing this value requires written approval from the Head of "
              "Security and is recorded in the change log."),
        ("p", "Backups are not an archive. Data that must be kept for longer than 35 days is "
              "retained in its source system according to section 5, never by keeping backups "
              "for longer. The only way to keep a backup beyond 35 days is a legal hold "
              "(section 7)."),
        ("h2", "6.4 Offsite copies"),
        ("p", "Every backup is copied to a second cloud region at least 1,000 km from the "
              "primary region within 6 hours of completing. The primary region is in Oregon "
              "and the offsite copies are stored in Virginia, in a separate cloud account with "
              "its own credentials that no single engineer controls. Offsite copies are "
              "write-once (object lock) for the full 35 days, so they cannot be deleted or "
              "encrypted by ransomware, even by an administrator."),
        ("p", "All backups and offsite copies are encrypted with AES-256. The encryption keys "
              "are stored in Vaultkeeper and rotated under the information security policy."),
        ("h2", "6.5 Restore testing"),
        ("p", "Each critical system is restored from backup into an isolated environment once "
              "per quarter. The SRE team records how long the restore took and whether the "
              "data was complete. A failed restore test is tracked as a SEV3 ticket and must "
              "be fixed within 30 days."),
    ],
    [
        ("h1", "7. Legal hold"),
        ("p", "A legal hold is an instruction from Legal to preserve data that may be relevant "
              "to a lawsuit, a regulatory investigation or an audit. Only the General Counsel, "
              "Sofia Marquez, or a lawyer she delegates can place a legal hold."),
        ("h2", "7.1 Effect of a legal hold"),
        ("p", "A legal hold overrides every retention period in this policy, including the "
              "35-day expiry of backups. While the hold is in place, data covered by it must "
              "not be deleted, altered or anonymised, whatever its normal retention period."),
        ("li", "Legal sends a hold notice to every custodian, that is, every person or team "
               "whose data is covered. Custodians must acknowledge the notice within 2 "
               "business days."),
        ("li", "Automatic deletion jobs for the affected systems are suspended for the data "
               "covered by the hold."),
        ("li", "The SRE team copies the affected backups into a separate hold vault that is "
               "excluded from automatic expiry. Access to the hold vault is limited to Legal "
               "and two named SRE engineers, and every access is logged."),
        ("h2", "7.2 Releasing a hold"),
        ("p", "Only the General Counsel can release a legal hold. When a hold is released, the "
              "data returns to its normal retention period. Data whose retention period has "
              "already ended is deleted within 30 days of the release, and the copies in the "
              "hold vault are destroyed."),
        ("p", "Legal keeps a register of all active holds and reviews it every month together "
              "with the data owners. Breaking a legal hold can have serious legal consequences "
              "for the company; if you are unsure whether data is covered, ask Legal before "
              "deleting anything."),
    ],
    [
        ("h1", "8. Deletion and disposal"),
        ("p", "When data reaches the end of its retention period it is deleted with the "
              "system's secure deletion function, or anonymised so that it can no longer be "
              "linked to a person or a customer."),
        ("p", "Requests from customers to delete their data are completed within 30 days. "
              "Deleted data disappears from backups when those backups expire, at most 35 days "
              "later; customers are told about this delay in the deletion confirmation."),
        ("p", "Hard drives, robot storage modules and laptops are wiped and then shredded by a "
              "certified vendor. The certificate of destruction is kept for 7 years."),
        ("h1", "9. Exceptions"),
        ("p", "Exceptions to this policy are requested with a ticket in the SEC project. They "
              "must be approved by the Head of Security and by the data owner, are valid for "
              "at most 12 months, and must describe how the risk is reduced in the meantime."),
        ("h1", "10. Review"),
        ("p", "This policy is reviewed every year by the Head of Security, the General Counsel "
              "and the Financial Controller. Violations are handled under the disciplinary "
              "procedure."),
        ("h2", "Revision history"),
        ("li", "2.0, March 2022: first version covering the Fleet Controller."),
        ("li", "2.1, January 2023: added camera clips recorded at customer sites."),
        ("li", "2.2, September 2023: offsite copies made write-once (object lock)."),
        ("li", "2.3, April 2024: backup period changed from 30 to 35 days; legal hold vault "
               "added."),
    ],
]


class PolicyPDF(FPDF):
    def footer(self):
        self.set_y(-15)
        self.set_font("Helvetica", "", 8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 10, f"Northwind Robotics - {TITLE} - version 2.3 - Page {self.page_no()} of {{nb}}",
                  align="C")


def build(out: Path = OUT) -> None:
    pdf = PolicyPDF(format="A4")
    pdf.set_title(TITLE)
    pdf.set_author("Northwind Robotics Security team")
    pdf.set_subject("Retention periods, backups, offsite copies and legal hold")
    pdf.set_creation_date(datetime(2024, 4, 1, tzinfo=timezone.utc))
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(True, margin=20)

    for number, page in enumerate(PAGES, start=1):
        pdf.add_page()
        for kind, text in page:
            if kind == "title":
                pdf.set_font("Helvetica", "B", 18)
                pdf.multi_cell(0, 9, text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2)
            elif kind == "sub":
                pdf.set_font("Helvetica", "", 10)
                pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
            elif kind == "h1":
                pdf.ln(3)
                pdf.set_font("Helvetica", "B", 14)
                pdf.multi_cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
            elif kind == "h2":
                pdf.ln(1)
                pdf.set_font("Helvetica", "B", 11.5)
                pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
            elif kind == "p":
                pdf.set_font("Helvetica", "", 10.5)
                pdf.multi_cell(0, 5.2, text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2)
            elif kind == "li":
                pdf.set_font("Helvetica", "", 10.5)
                pdf.set_x(25)
                pdf.multi_cell(0, 5.2, "- " + text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
            else:
                raise ValueError(kind)
        if pdf.page_no() != number:
            sys.exit(f"page {number} overflowed onto page {pdf.page_no()}; shorten it")

    pdf.output(str(out))
    print(f"wrote {out} ({out.stat().st_size} bytes, {pdf.page_no()} pages)")


if __name__ == "__main__":
    build()
